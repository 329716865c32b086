"""Batch bodies are validated like Mailchimp's schema; results are a real gzipped tar."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest

from campaign_bridge.sandbox.mailchimp.batches import (
    build_archive,
    parse_operations,
    read_archive,
    result_entry,
)
from campaign_bridge.sandbox.mailchimp.wire import Problem


def test_operations_need_method_and_path_and_a_string_body() -> None:
    ops = parse_operations(
        {
            "operations": [
                {
                    "method": "put",
                    "path": "/lists/a/members/b",
                    "body": "{}",
                    "operation_id": 7,
                    "params": {"skip_merge_validation": True},
                }
            ]
        }
    )
    assert (ops[0].method, ops[0].operation_id) == ("PUT", "7")
    assert ops[0].params == {"skip_merge_validation": "true"}
    with pytest.raises(Problem) as missing:
        parse_operations({"operations": [{"method": "GET"}]})
    assert missing.value.title == "Invalid Resource"
    with pytest.raises(Problem) as object_body:
        parse_operations({"operations": [{"method": "POST", "path": "/x", "body": {"a": 1}}]})
    assert object_body.value.errors == [
        {"field": "operations.0.body", "message": "Schema describes string, dict found instead"}
    ]
    with pytest.raises(Problem):
        parse_operations({"operations": [{"method": "HEAD", "path": "/x"}]})
    with pytest.raises(Problem):
        parse_operations(None)


def test_archive_is_a_gzipped_tar_of_json_arrays_with_string_responses() -> None:
    results = [result_entry(200 if i % 3 else 400, f"op-{i}", {"n": i}) for i in range(1203)]
    data = build_archive("abc1234567", results, mtime=1_700_000_000)
    assert data[:2] == b"\x1f\x8b"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        assert names == ["abc1234567/0.json", "abc1234567/1.json", "abc1234567/2.json"]
        first = json.loads(tar.extractfile(names[0]).read())  # type: ignore[union-attr]
    assert isinstance(first, list)
    assert len(first) == 500
    assert first[1] == {"status_code": 200, "operation_id": "op-1", "response": '{"n":1}'}
    back = read_archive(data)
    assert back == results
    assert json.loads(back[1202]["response"]) == {"n": 1202}
    # deterministic bytes for the same input
    assert build_archive("abc1234567", results, mtime=1_700_000_000) == data
