"""``cognito_snapshot``: walk Cognito Sync directly, land what it reads as snapshot batches, export the state."""
