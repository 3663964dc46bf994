"""The sync tasks, one module per record type plus the scheduled ones.

Importing this package registers every task with the Celery app: the app names it by string
(``worker.celery_app.TASK_PACKAGES``), so the runtime below never imports this layer. A module
that fails to import stops the worker with its error instead of being skipped.
"""

from tasks import customer, invoice, job, ops, purchase_order, site, sweep, timecard

__all__ = ["customer", "invoice", "job", "ops", "purchase_order", "site", "sweep", "timecard"]
