"""Result records: schema, construction, validation, and the one writer (the store)."""
