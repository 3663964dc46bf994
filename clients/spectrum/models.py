"""Outbound Spectrum requests: strict, validated against the service layouts before sending.

Mappers build these; the client sends them. Validation refuses unknown elements, values over
Spectrum's max length (Spectrum would truncate silently, reference §5), forbidden characters in
codes, bad formats and missing required values — each with the service and the element named.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clients.digest import request_digest as request_digest  # re-exported: tasks digest plans
from clients.spectrum.formats import check_value
from clients.spectrum.services import (
    AR_MULTI_LINE_DETAIL,
    AR_MULTI_LINE_HEADER,
    SERVICES,
)
from clients.spectrum.services import (
    Field as LayoutField,
)


def _validate(where: str, layout: tuple[LayoutField, ...], values: dict[str, str]) -> None:
    known = {f.name: f for f in layout}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown element(s) {', '.join(unknown)}")
    problems = []
    for name, value in values.items():
        why = check_value(known[name], value)
        if why:
            problems.append(f"{where}.{name} = {value!r} {why}")
    for f in layout:
        if f.required and not values.get(f.name):
            problems.append(f"{where}.{f.name} is required")
    if problems:
        raise ValueError("; ".join(problems))


class SpectrumRequest(BaseModel):
    """One SOAP Put or Get call: a service name and its element values (as wire text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    values: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _layout(self) -> SpectrumRequest:
        svc = SERVICES.get(self.service)
        if svc is None:
            raise ValueError(f"unknown Spectrum service {self.service!r}")
        if svc.type == "put":
            _validate(self.service, svc.fields, self.values)
        else:
            unknown = sorted(set(self.values) - set(svc.field_names))
            if unknown:
                raise ValueError(f"{self.service}: unknown parameter(s) {', '.join(unknown)}")
        return self

    def digest(self) -> str:
        """A stable digest of what is sent (the audit and the ledger compare these)."""
        return request_digest(self.model_dump())


class ARInvoiceRequest(BaseModel):
    """One multi-line AR invoice or credit memo for ``POST /customer/invoice``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: dict[str, str]
    details: list[dict[str, str]] = Field(min_length=1)

    @model_validator(mode="after")
    def _layout(self) -> ARInvoiceRequest:
        _validate("ARMultiLineInvoice", AR_MULTI_LINE_HEADER, self.header)
        for i, d in enumerate(self.details, 1):
            _validate(f"ARMultiLineInvoice.detail[{i}]", AR_MULTI_LINE_DETAIL, d)
        return self

    @property
    def number(self) -> str:
        return self.header["Invoice_Or_Transaction"]

    def digest(self) -> str:
        return request_digest(self.model_dump())
