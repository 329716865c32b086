"""A dlt ``rest_api`` pipeline for Mailchimp, as a data team would write it.

Run by the dlt environment's Python (not imported by the tests):
``python dlt_pipeline.py BASE_URL API_KEY WORK_DIR``. It loads audiences, their members,
sent campaigns and each campaign's email activity into DuckDB, then prints one JSON object:
``{table: [rows as lists]}`` read back from the database.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dlt
from dlt.sources.rest_api import rest_api_source


def source(base_url: str, api_key: str) -> object:
    return rest_api_source(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/",
                "auth": {"type": "http_basic", "username": "anystring", "password": api_key},
                "paginator": {
                    "type": "offset",
                    "limit": 7,
                    "offset_param": "offset",
                    "limit_param": "count",
                    "total_path": "total_items",
                },
            },
            "resource_defaults": {"write_disposition": "replace"},
            "resources": [
                {"name": "lists", "endpoint": {"path": "lists", "data_selector": "lists"}},
                {
                    "name": "members",
                    "endpoint": {
                        "path": "lists/{list_id}/members",
                        "data_selector": "members",
                        "params": {
                            "list_id": {"type": "resolve", "resource": "lists", "field": "id"}
                        },
                    },
                },
                {
                    "name": "campaigns",
                    "endpoint": {
                        "path": "campaigns",
                        "data_selector": "campaigns",
                        "params": {"status": "sent"},
                    },
                },
                {
                    "name": "email_activity",
                    "endpoint": {
                        "path": "reports/{campaign_id}/email-activity",
                        "data_selector": "emails",
                        "params": {
                            "campaign_id": {
                                "type": "resolve",
                                "resource": "campaigns",
                                "field": "id",
                            }
                        },
                    },
                },
            ],
        }
    )


QUERIES = {
    "lists": "select id from lists",
    "members": "select id, list_id from members",
    "campaigns": "select id from campaigns",
    "email_activity": "select campaign_id, email_id from email_activity",
    "activity": (
        "select e.campaign_id, e.email_id, a.action from email_activity__activity a "
        "join email_activity e on a._dlt_parent_id = e._dlt_id"
    ),
}


def main() -> None:
    base_url, api_key, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    pipeline = dlt.pipeline(
        pipeline_name="mailchimp",
        pipelines_dir=str(work / "pipelines"),
        destination=dlt.destinations.duckdb(str(work / "warehouse.duckdb")),
        dataset_name="mailchimp",
    )
    pipeline.run(source(base_url, api_key))
    out = {}
    with pipeline.sql_client() as client:
        for table, query in QUERIES.items():
            out[table] = [list(row) for row in client.execute_sql(query)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
