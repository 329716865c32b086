"""Provider adapters: one module per provider, all behind the contract in ``base``."""
