"""``stsync config check --remote``: every code the config names must exist in Spectrum (F10).

Reads Spectrum's reference lists through Info-Link (no public Get service exists for most of them,
reference §6), per connection.
"""

from __future__ import annotations

from collections.abc import Iterator

from clients.errors import SyncError
from clients.spectrum.infolink import InfoLinkReader
from mappers.rules import ConnectionRules
from worker.settings import Settings


def configured_codes(rules: ConnectionRules) -> Iterator[tuple[str, str, str]]:
    """``(kind, code, config key)`` for every Spectrum code in one connection's rules."""
    yield "terms", rules.customers.terms_code, "customers.terms_code"
    yield "sales_tax", rules.customers.sales_tax_code, "customers.sales_tax_code"
    tax = rules.tax
    if tax.default_sales_tax_code:
        yield "sales_tax", tax.default_sales_tax_code, "tax.default_sales_tax_code"
    for k, v in tax.sales_tax_by_state.items():
        yield "sales_tax", v, f"tax.sales_tax_by_state.{k}"
    for k, v in tax.sales_tax_by_rate.items():
        yield "sales_tax", v, f"tax.sales_tax_by_rate.{k}"
    if tax.default_tax_class:
        yield "tax_class", tax.default_tax_class, "tax.default_tax_class"
    for k, v in tax.tax_class_by_state.items():
        yield "tax_class", v, f"tax.tax_class_by_state.{k}"
    for cc in rules.cost_centers.codes:
        yield "cost_center", cc, "cost_centers.codes"
    for k, v in rules.cost_centers.gl_account.items():
        yield "gl_account", v, f"cost_centers.gl_account.{k}"
    for k, v in rules.invoices.job_type_gl.items():
        yield "gl_account", v, f"invoices.job_type_gl.{k}"
    if rules.jobs.job_type_target == "job_type":
        for k, v in rules.jobs.job_type_map.items():
            yield "job_type", v, f"jobs.job_type_map.{k}"
    if rules.jobs.template_job:
        yield "job", rules.jobs.template_job, "jobs.template_job"
    tc = rules.timecards
    for k, v in tc.pay_types.items():
        yield "pay_type", v, f"timecards.pay_types.{k}"
    yield "pay_type", tc.regular_pay_type, "timecards.regular_pay_type"
    yield "cost_type", tc.cost_type, "timecards.cost_type"
    for k, v in tc.department_by_office.items():
        yield "department", v, f"timecards.department_by_office.{k}"
    if tc.default_department:
        yield "department", tc.default_department, "timecards.default_department"
    for k, v in tc.employee_map.items():
        yield "employee", v, f"timecards.employee_map.{k}"


def remote_problems(settings: Settings) -> list[str]:
    """Human-readable problems: codes the config names that Spectrum does not have."""
    problems: list[str] = []
    for name, conn in settings.connections.items():
        try:
            reader = InfoLinkReader(conn.infolink_url, conn.company_code)
        except SyncError as exc:  # a bad URL or a missing driver: one line, no traceback
            problems.append(f"connections.{name}: cannot open Info-Link: {exc}")
            continue
        try:
            seen: set[tuple[str, str]] = set()
            for kind, code, where in configured_codes(conn.rules):
                if (kind, code) in seen:
                    continue
                seen.add((kind, code))
                if not reader.code_exists(kind, code):
                    problems.append(f"connections.{name}.{where} = {code!r} ({kind})")
        except SyncError as exc:
            problems.append(f"connections.{name}: cannot read Spectrum: {exc}")
        finally:
            close = getattr(reader, "close", None)
            if callable(close):
                close()
    return problems
