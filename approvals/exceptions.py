"""Errors of the approval services, turned into 403 and 409 answers by the REST layer and the admin."""


class ApprovalError(Exception):
    """Base of the approval errors."""


class NotAnApproverError(ApprovalError):
    """The user is not among those who may decide this approval."""


class ApprovalConflictError(ApprovalError):
    """The approval is already settled, of the other kind, or no longer awaited."""
