"""``python -m campaign_bridge``: the same entry point as the ``campaign-bridge`` script."""

from campaign_bridge._entry import main

if __name__ == "__main__":
    main()
