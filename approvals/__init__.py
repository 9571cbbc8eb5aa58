"""Human steps: approvals, their decisions and their expiry."""
