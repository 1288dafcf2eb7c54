"""The Django app of the client test: fields for ulid columns and the models."""
