"""Workflow definitions: versioned DAGs of steps, their validation, expressions and actions."""
