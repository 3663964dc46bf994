"""Spectrum PO line -> ServiceTrade job item mapper (F9): tables and properties."""

from __future__ import annotations

import ast
import json
import string
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.errors import ConfigError, MappingError
from clients.servicetrade.models import JobItem, LibItem
from clients.spectrum.po_models import PoLine
from mappers.purchase_order import (
    closed_line_action,
    index_lib_items,
    is_closed,
    job_item_digest,
    job_item_update,
    match_lib_item,
    match_service_line,
    po_line_key,
    po_line_source_ref,
    po_line_to_job_item,
    to_wire,
    used_on,
    zeroed,
)
from mappers.rules import PurchaseOrderRules

TZ = "America/New_York"

RULES = PurchaseOrderRules(
    service_line_by_phase={"100/M": 11, "100": 10, "200": 20, "3a-x": 30},
    lib_item_by_item_code={"PIPE-1": 501, "dup": 777},
    default_service_line_id=99,
    default_lib_item_id=None,
)


def make_line(*, validate: bool = True, **overrides: Any) -> PoLine:
    """A PO line; ``validate=False`` skips the model's checks (the mapper must still cope)."""
    values: dict[str, Any] = {
        "po_number": "1001",
        "line_number": "2",
        "vendor_code": "ACME",
        "job_number": "T1042",
        "order_date": date(2024, 3, 10),
        "po_status": "O",
        "item_code": "VALVE-2",
        "description": "Gate valve 2in",
        "quantity": Decimal("4"),
        "unit_cost": Decimal("37.5"),
        "unit_of_measure": "EA",
        "extension": Decimal("150"),
        "gl_account": "5000",
        "phase_code": "100",
        "cost_type": "M",
        "line_status": "O",
        "modified_at": datetime(2024, 3, 10, 9, 30),
    }
    values.update(overrides)
    return PoLine(**values) if validate else PoLine.model_construct(**values)


# --- library item ---------------------------------------------------------------------------------
LIB = {"VALVE-2": 401, "pipe-1": 402}


@pytest.mark.parametrize(
    ("item_code", "rules", "expected"),
    [
        ("VALVE-2", RULES, 401),  # lib item code
        ("valve-2", RULES, 401),  # case-insensitive
        ("  VALVE-2 ", RULES, 401),  # padded CHAR
        ("PIPE-1", RULES, 402),  # lib item code wins over the config map (501)
        ("DUP", RULES, 777),  # config map, case-insensitive
        ("NOPE", RULES, None),  # nothing, no default
        ("NOPE", RULES.model_copy(update={"default_lib_item_id": 9}), 9),  # default
        ("", RULES.model_copy(update={"default_lib_item_id": 9}), 9),  # no item code
        ("", RULES, None),
    ],
)
def test_match_lib_item(item_code: str, rules: PurchaseOrderRules, expected: int | None) -> None:
    assert match_lib_item(item_code, LIB, rules) == expected


def test_index_lib_items_sets_aside_ambiguous_codes() -> None:
    items = [
        LibItem(id=1, code="A"),
        LibItem(id=2, code=" a "),
        LibItem(id=3, code="B"),
        LibItem(id=4, code=None),
        LibItem(id=5, code="DUP"),
        LibItem(id=6, code="dup"),
        LibItem(id=3, code="B"),  # the same item listed twice is not ambiguous
    ]
    by_code, ambiguous = index_lib_items(items)
    assert by_code == {"B": 3}
    assert ambiguous == {"A", "DUP"}


def test_ambiguous_code_needs_the_config_map() -> None:
    by_code, ambiguous = index_lib_items([LibItem(id=1, code="A"), LibItem(id=2, code="A")])
    with pytest.raises(MappingError) as err:
        match_lib_item("a", by_code, RULES, ambiguous_codes=ambiguous, record="PO 7 line 1")
    assert "PO 7 line 1: item code:" in str(err.value)
    assert "lib_item_by_item_code" in str(err.value)
    # the config map resolves it
    rules = RULES.model_copy(update={"lib_item_by_item_code": {"A": 2}})
    assert match_lib_item("a", by_code, rules, ambiguous_codes=ambiguous) == 2


# --- service line ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("phase", "cost_type", "rules", "expected"),
    [
        ("100", "M", RULES, 11),  # phase/cost type
        ("100", "L", RULES, 10),  # phase only
        ("100", "", RULES, 10),
        (" 100 ", " m ", RULES, 11),  # padded, lower-case
        ("200", "M", RULES, 20),
        ("3A-X", "L", RULES, 30),  # config key compared case-insensitively
        ("999", "M", RULES, 99),  # default routing
        ("", "M", RULES, 99),
        ("999", "M", RULES.model_copy(update={"default_service_line_id": None}), None),
    ],
)
def test_match_service_line(
    phase: str, cost_type: str, rules: PurchaseOrderRules, expected: int | None
) -> None:
    assert match_service_line(phase, cost_type, rules) == expected


# --- dates and money ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("day", "tz", "expected"),
    [
        (date(2024, 1, 1), "UTC", 1_704_067_200),
        (date(2024, 3, 10), "America/New_York", 1_710_046_800),  # DST starts at 02:00: EST
        (date(2024, 7, 4), "America/New_York", 1_720_065_600),  # EDT
        (date(2024, 7, 4), "America/Los_Angeles", 1_720_076_400),
    ],
)
def test_used_on_is_local_midnight(day: date, tz: str, expected: int) -> None:
    assert used_on(day, tz) == expected


def test_unknown_time_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        used_on(date(2024, 1, 1), "Mars/Olympus")


@pytest.mark.parametrize(
    ("quantity", "unit_cost", "want_qty", "want_cost"),
    [
        ("4", "37.5", "4", "37.5"),
        ("4.0000", "37.5000", "4", "37.5"),
        ("100", "1200", "100", "1200"),  # no exponent form
        ("2.5", "12.34565", "2.5", "12.3457"),  # Item_Price keeps four places, half up
        ("-1", "-0.00001", "-1", "0"),  # credit line; negative zero cost is zero
        ("0", "0", "0", "0"),
    ],
)
def test_money_and_quantity(quantity: str, unit_cost: str, want_qty: str, want_cost: str) -> None:
    payload = po_line_to_job_item(
        make_line(quantity=Decimal(quantity), unit_cost=Decimal(unit_cost)),
        st_job_id=7,
        lib_items_by_code=LIB,
        rules=RULES,
        tz=TZ,
    )
    assert str(payload["quantity"]) == want_qty
    assert str(payload["cost"]) == want_cost


# --- the payload ----------------------------------------------------------------------------------
def test_po_line_to_job_item_full_payload() -> None:
    payload = po_line_to_job_item(
        make_line(), st_job_id=5551, lib_items_by_code=LIB, rules=RULES, tz=TZ
    )
    assert payload == {
        "jobId": 5551,
        "name": "Gate valve 2in [ACME]",
        "quantity": Decimal("4"),
        "cost": Decimal("37.5"),
        "usedOn": 1_710_046_800,
        "libitemId": 401,
        "serviceLineId": 11,
        "source": {"type": "refnumber", "value": "PO 1001-2"},
    }


def test_optional_parts_are_left_out() -> None:
    line = make_line(order_date=None, item_code="UNKNOWN", vendor_code="", description="")
    payload = po_line_to_job_item(line, st_job_id=1, lib_items_by_code=LIB, rules=RULES, tz=TZ)
    assert "usedOn" not in payload
    assert "libitemId" not in payload
    assert payload["name"] == "UNKNOWN"  # description empty: the item code names it


def test_missing_optional_texts() -> None:
    line = make_line(
        vendor_code=None, item_code=None, description=None, phase_code=None, cost_type=None
    )
    payload = po_line_to_job_item(line, st_job_id=1, lib_items_by_code=LIB, rules=RULES, tz=TZ)
    assert payload["name"] == "PO 1001-2"
    assert payload["serviceLineId"] == 99  # default routing
    assert "libitemId" not in payload


def test_wire_payload_is_plain_json_with_exact_numbers() -> None:
    payload = _desired(quantity=Decimal("2.5000"), unit_cost=Decimal("9999999999.9999"))
    text = json.dumps(to_wire(payload), sort_keys=True)
    assert '"quantity": 2.5' in text
    assert '"cost": 9999999999.9999' in text
    assert '"jobId": 5551' in text
    assert json.loads(text)["source"] == {"type": "refnumber", "value": "PO 1001-2"}
    assert to_wire({"quantity": Decimal("4")}) == {"quantity": 4}
    assert isinstance(to_wire({"quantity": Decimal("4")})["quantity"], int)


def test_name_falls_back_to_the_po_reference() -> None:
    line = make_line(item_code="", description="  ", vendor_code="V9")
    payload = po_line_to_job_item(line, st_job_id=1, lib_items_by_code=LIB, rules=RULES, tz=TZ)
    assert payload["name"] == "PO 1001-2 [V9]"


def test_unroutable_line_names_the_record_and_the_key() -> None:
    rules = RULES.model_copy(update={"default_service_line_id": None})
    with pytest.raises(MappingError) as err:
        po_line_to_job_item(
            make_line(phase_code="777", cost_type="E"),
            st_job_id=1,
            lib_items_by_code=LIB,
            rules=rules,
            tz=TZ,
        )
    msg = str(err.value)
    assert msg.startswith("PO 1001 line 2: service line:")
    assert "'777'" in msg
    assert "service_line_by_phase" in msg


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity": Decimal("NaN")}, "quantity"),
        ({"unit_cost": Decimal("Infinity")}, "unit cost"),
        ({"unit_cost": Decimal("1e40")}, "unit cost"),
        ({"quantity": Decimal("-1e10")}, "quantity"),
        ({"po_number": " "}, "PO number"),
        ({"line_number": ""}, "line number"),
    ],
)
def test_bad_values_are_mapping_errors(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as err:
        po_line_to_job_item(
            make_line(validate=False, **overrides),
            st_job_id=1,
            lib_items_by_code=LIB,
            rules=RULES,
            tz=TZ,
        )
    assert err.value.field == field


def test_job_id_must_be_an_id() -> None:
    with pytest.raises(MappingError, match="job"):
        po_line_to_job_item(make_line(), st_job_id=0, lib_items_by_code=LIB, rules=RULES, tz=TZ)


def test_keys() -> None:
    line = make_line(po_number=" 1001 ", line_number=" 2")
    assert po_line_key(line) == "1001:2"
    assert po_line_source_ref(line) == "PO 1001-2"


# --- updates --------------------------------------------------------------------------------------
def _as_existing(payload: dict[str, Any], item_id: int = 900) -> JobItem:
    data: dict[str, Any] = {
        "id": item_id,
        "name": payload["name"],
        "quantity": payload["quantity"],
        "cost": payload["cost"],
        "usedOn": payload.get("usedOn"),
        "job": {"id": payload["jobId"]},
        "serviceLine": {"id": payload["serviceLineId"]},
        "source": payload["source"],
    }
    if "libitemId" in payload:
        data["libItem"] = {"id": payload["libitemId"]}
    return JobItem.model_validate(data)


def _desired(**overrides: Any) -> dict[str, Any]:
    return po_line_to_job_item(
        make_line(**overrides), st_job_id=5551, lib_items_by_code=LIB, rules=RULES, tz=TZ
    )


def test_unchanged_item_needs_no_update() -> None:
    existing = _as_existing(_desired())
    assert job_item_update(existing, _desired()) == {}


def test_numbers_compare_by_value() -> None:
    existing = JobItem.model_validate(
        {**_as_existing(_desired()).model_dump(by_alias=True), "quantity": "4.000", "cost": 37.50}
    )
    assert job_item_update(existing, _desired()) == {}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"quantity": Decimal("6")}, {"quantity": Decimal("6")}),
        ({"unit_cost": Decimal("40.10")}, {"cost": Decimal("40.1")}),
        ({"description": "Ball valve"}, {"name": "Ball valve [ACME]"}),
        ({"order_date": date(2024, 7, 4)}, {"usedOn": 1_720_065_600}),
        ({"item_code": "PIPE-1"}, {"libitemId": 402}),
        ({"cost_type": "L"}, {"serviceLineId": 10}),
        (
            {"quantity": Decimal("1"), "unit_cost": Decimal("2")},
            {"quantity": Decimal("1"), "cost": Decimal("2")},
        ),
    ],
)
def test_changed_fields_only(overrides: dict[str, Any], expected: dict[str, Any]) -> None:
    existing = _as_existing(_desired())
    assert job_item_update(existing, _desired(**overrides)) == expected


def test_missing_remote_parts_are_filled_in() -> None:
    existing = JobItem(id=1, name="Gate valve 2in [ACME]", quantity=Decimal(4))
    update = job_item_update(existing, _desired())
    assert update == {
        "cost": Decimal("37.5"),
        "usedOn": 1_710_046_800,
        "libitemId": 401,
        "serviceLineId": 11,
        "source": {"type": "refnumber", "value": "PO 1001-2"},
    }


def test_zeroed_keeps_everything_but_quantity() -> None:
    desired = _desired()
    z = zeroed(desired)
    assert z["quantity"] == 0
    assert {k: v for k, v in z.items() if k != "quantity"} == {
        k: v for k, v in desired.items() if k != "quantity"
    }
    assert job_item_update(_as_existing(desired), z) == {"quantity": Decimal(0)}


# --- closed lines ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("po_status", "line_status", "policy", "expected"),
    [
        ("O", "O", "remove", "sync"),
        ("P", "", "zero", "sync"),
        ("O", "C", "leave", "leave"),
        ("O", "X", "zero", "zero"),
        ("O", "x", "remove", "remove"),  # lower-case status still counts
        ("C", "O", "remove", "remove"),  # a closed PO closes its lines
        ("X", "", "zero", "zero"),
    ],
)
def test_closed_line_action(po_status: str, line_status: str, policy: str, expected: str) -> None:
    rules = RULES.model_copy(update={"closed_lines": policy})
    line = make_line(po_status=po_status, line_status=line_status)
    assert closed_line_action(line, rules) == expected
    assert is_closed(line) == (expected != "sync")


# --- digest ---------------------------------------------------------------------------------------
def test_digest_ignores_key_order_and_decimal_spelling() -> None:
    a = {"jobId": 1, "quantity": Decimal("5.00"), "source": {"type": "refnumber", "value": "x"}}
    b = {"source": {"value": "x", "type": "refnumber"}, "quantity": Decimal("5"), "jobId": 1}
    assert job_item_digest(a) == job_item_digest(b)
    assert job_item_digest(a) != job_item_digest({**a, "quantity": Decimal("5.01")})
    assert len(job_item_digest(a)) == 64


def test_digest_changes_with_each_mapped_field() -> None:
    base = job_item_digest(_desired())
    for overrides in (
        {"quantity": Decimal("5")},
        {"unit_cost": Decimal("1")},
        {"description": "x"},
        {"vendor_code": "OTHER"},
        {"order_date": date(2024, 3, 11)},
        {"phase_code": "200"},
    ):
        assert job_item_digest(_desired(**overrides)) != base, overrides


# --- purity ---------------------------------------------------------------------------------------
def test_mapper_imports_only_models_and_stdlib() -> None:
    src = Path(__file__).resolve().parents[2] / "mappers" / "purchase_order.py"
    tree = ast.parse(src.read_text())
    allowed_prefixes = (
        "__future__",
        "clients.errors",
        "clients.servicetrade.models",
        "clients.spectrum.po_models",
        "clients.spectrum.formats",
        "mappers.",
    )
    stdlib = {"hashlib", "json", "collections", "datetime", "decimal", "typing", "zoneinfo"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            assert mod.startswith(allowed_prefixes) or mod.split(".")[0] in stdlib, mod
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in stdlib, alias.name


# --- properties -----------------------------------------------------------------------------------
codes = st.text(alphabet=string.ascii_letters + string.digits + " -/.", max_size=12)
maybe_codes = st.one_of(st.none(), codes)
decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-(10**6), max_value=10**6, places=6),
)
lines = st.builds(
    make_line,
    validate=st.just(False),
    po_number=codes,
    line_number=codes,
    vendor_code=maybe_codes,
    item_code=maybe_codes,
    description=st.one_of(st.none(), st.text(max_size=40)),
    order_date=st.one_of(st.none(), st.dates(min_value=date(1950, 1, 1))),
    quantity=decimals,
    unit_cost=decimals,
    phase_code=maybe_codes,
    cost_type=maybe_codes,
    po_status=st.sampled_from([None, "", "O", "P", "C", "X", "c"]),
    line_status=st.sampled_from([None, "", "O", "C", "X"]),
)
rules_st = st.builds(
    PurchaseOrderRules,
    service_line_by_phase=st.dictionaries(codes, st.integers(1, 10**6), max_size=4),
    lib_item_by_item_code=st.dictionaries(codes, st.integers(1, 10**6), max_size=4),
    default_service_line_id=st.one_of(st.none(), st.integers(1, 10**6)),
    default_lib_item_id=st.one_of(st.none(), st.integers(1, 10**6)),
    closed_lines=st.sampled_from(["leave", "zero", "remove"]),
)
zones = st.sampled_from(["UTC", "America/New_York", "Pacific/Apia", "Asia/Kolkata", "Nope/Zone"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=lines,
    rules=rules_st,
    lib=st.dictionaries(codes, st.integers(1, 10**6), max_size=4),
    job_id=st.integers(-5, 10**16),
    tz=zones,
)
def test_only_typed_errors_escape(
    line: PoLine, rules: PurchaseOrderRules, lib: dict[str, int], job_id: int, tz: str
) -> None:
    try:
        payload = po_line_to_job_item(
            line, st_job_id=job_id, lib_items_by_code=lib, rules=rules, tz=tz
        )
    except (MappingError, ConfigError):
        return
    # whatever maps must round-trip: the item it creates needs no update, and the digest is stable
    assert job_item_update(_as_existing(payload), payload) == {}
    assert job_item_digest(payload) == job_item_digest(dict(reversed(list(payload.items()))))
    assert payload["source"]["value"] == po_line_source_ref(line)
    wire = json.loads(json.dumps(to_wire(payload)))
    assert Decimal(str(wire["quantity"])) == payload["quantity"]
    assert Decimal(str(wire["cost"])) == payload["cost"]
    assert closed_line_action(line, rules) in ("leave", "zero", "remove", "sync")


@given(line=lines, rules=rules_st)
def test_service_line_always_routes_when_a_default_exists(
    line: PoLine, rules: PurchaseOrderRules
) -> None:
    rules = rules.model_copy(update={"default_service_line_id": 4242})
    assert match_service_line(line.phase_code, line.cost_type, rules) is not None
