"""The pages, one module per thing a subscriber does."""
