"""What callers ask of the catalog, validated. Validation is pure and complete: a command that passes can
only fail on the catalog's state (visibility, permissions, status, concurrency), never on its own content.
Every failure is one InvalidArgument listing every bad field."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from modelhub.catalog.domain.base_models import canonical_base_model
from modelhub.catalog.domain.events import License
from modelhub.catalog.domain.vocabulary import CommercialUse, ModelType, Relation
from modelhub.core.errors import FieldViolation, InvalidArgument

MAX_NAME = 200
MAX_DESCRIPTION = 50_000
MAX_TAGS = 20
MAX_TAG = 50
MAX_TRAINED_WORDS = 50
MAX_TRAINED_WORD = 200
MAX_CHANGELOG = 50_000
MAX_EARLY_ACCESS_DAYS = 30
MAX_REQUEST_ID = 128
MAX_REASON = 1000
MAX_ATTRIBUTION = 1000
MAX_PARENTS = 16
MERGE_WEIGHT_TOLERANCE = 1e-3
SYSTEM_ID: Final = "system"


@dataclass(frozen=True)
class Actor:
    """Who asks: a user (moderators and admins are `privileged`), or the catalog itself (`system`)."""

    id: str
    name: str = ""
    privileged: bool = False

    @classmethod
    def system(cls) -> Actor:
        """The catalog acting on its own (the publication scheduler, file scans)."""
        return cls(SYSTEM_ID, SYSTEM_ID, privileged=True)

    @property
    def is_system(self) -> bool:
        return self.id == SYSTEM_ID and self.privileged


@dataclass(frozen=True)
class ModelFields:
    """The editable fields of a model, validated and normalized."""

    name: str
    description: str
    type: str
    tags: tuple[str, ...]
    license: License


@dataclass(frozen=True)
class ModelChanges:
    """An edit of a model: None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    type: str | None = None
    tags: tuple[str, ...] | None = None
    license: License | None = None


@dataclass(frozen=True)
class VersionFields:
    name: str
    base_model: str
    trained_words: tuple[str, ...]
    changelog: str
    early_access_days: int


@dataclass(frozen=True)
class VersionChanges:
    name: str | None = None
    base_model: str | None = None
    trained_words: tuple[str, ...] | None = None
    changelog: str | None = None
    early_access_days: int | None = None


@dataclass(frozen=True)
class ParentRequest:
    """One parent as the caller declares it (the parent's model is looked up, not trusted)."""

    parent_version_id: str
    relation: Relation
    weight: float = 0.0
    attribution: str = ""


class Violations:
    """Collects field violations; `raise_if_any` raises one InvalidArgument listing them all."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self, what: str) -> None:
        if self.items:
            fields = ", ".join(v.field for v in self.items)
            raise InvalidArgument(f"invalid {what}: check {fields}", violations=list(self.items))


def require_id(violations: Violations, field: str, value: str) -> str:
    value = value.strip()
    if not value:
        violations.add(field, "is required")
    return value


def check_name(violations: Violations, field: str, value: str) -> str:
    name = value.strip()
    if not 1 <= len(name) <= MAX_NAME:
        violations.add(field, f"must be 1 to {MAX_NAME} characters (after trimming spaces); got {len(name)}")
    return name


def check_text(violations: Violations, field: str, value: str, limit: int) -> str:
    if len(value) > limit:
        violations.add(field, f"must be at most {limit} characters; got {len(value)}")
    return value


def check_type(violations: Violations, field: str, value: str) -> str:
    try:
        return ModelType(value).value
    except ValueError:
        violations.add(field, f"must be one of {', '.join(t.value for t in ModelType)}; got {value!r}")
        return value


def normalize_tags(violations: Violations, field: str, tags: Iterable[str]) -> tuple[str, ...]:
    """Lower case, inner spaces collapsed, duplicates dropped (first kept)."""
    seen: dict[str, None] = {}
    for index, raw in enumerate(tags):
        tag = " ".join(raw.split()).lower()
        if not 1 <= len(tag) <= MAX_TAG:
            violations.add(f"{field}[{index}]", f"a tag must be 1 to {MAX_TAG} characters; got {len(tag)}")
            continue
        seen.setdefault(tag, None)
    if len(seen) > MAX_TAGS:
        violations.add(field, f"at most {MAX_TAGS} tags; got {len(seen)}")
    return tuple(seen)


def check_license(violations: Violations, field: str, license: License) -> License:
    uses: list[str] = []
    for index, use in enumerate(license.allow_commercial_use):
        try:
            canonical = CommercialUse(use).value
        except ValueError:
            violations.add(
                f"{field}.allow_commercial_use[{index}]",
                f"must be one of {', '.join(u.value for u in CommercialUse)}; got {use!r}",
            )
            continue
        if canonical not in uses:
            uses.append(canonical)
    ordered = tuple(u.value for u in CommercialUse if u.value in uses)
    return License(license.allow_no_credit, ordered, license.allow_derivatives, license.allow_different_license)


def check_base_model(violations: Violations, field: str, value: str) -> str:
    canonical = canonical_base_model(value)
    if canonical is None:
        violations.add(field, f"must be one of the base models ListBaseModels returns; got {value!r}")
        return value
    return canonical


def check_trained_words(violations: Violations, field: str, words: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for index, raw in enumerate(words):
        word = raw.strip()
        if not 1 <= len(word) <= MAX_TRAINED_WORD:
            violations.add(f"{field}[{index}]", f"must be 1 to {MAX_TRAINED_WORD} characters; got {len(word)}")
            continue
        seen.setdefault(word, None)
    if len(seen) > MAX_TRAINED_WORDS:
        violations.add(field, f"at most {MAX_TRAINED_WORDS} trained words; got {len(seen)}")
    return tuple(seen)


def check_early_access(violations: Violations, field: str, days: int) -> int:
    if not 0 <= days <= MAX_EARLY_ACCESS_DAYS:
        violations.add(field, f"must be 0 to {MAX_EARLY_ACCESS_DAYS} days; got {days}")
    return days


def model_fields(
    name: str, description: str, type: str, tags: Iterable[str], license: License, *, prefix: str = ""
) -> ModelFields:
    """Validate a new model's fields (raises InvalidArgument naming every bad one)."""
    v = Violations()
    fields = ModelFields(
        name=check_name(v, f"{prefix}name", name),
        description=check_text(v, f"{prefix}description", description, MAX_DESCRIPTION),
        type=check_type(v, f"{prefix}type", type),
        tags=normalize_tags(v, f"{prefix}tags", tags),
        license=check_license(v, f"{prefix}license", license),
    )
    v.raise_if_any("model")
    return fields


def model_changes(
    *,
    name: str | None = None,
    description: str | None = None,
    type: str | None = None,
    tags: Iterable[str] | None = None,
    license: License | None = None,
) -> ModelChanges:
    """Validate an edit; at least one field must change."""
    v = Violations()
    changes = ModelChanges(
        name=None if name is None else check_name(v, "name", name),
        description=None if description is None else check_text(v, "description", description, MAX_DESCRIPTION),
        type=None if type is None else check_type(v, "type", type),
        tags=None if tags is None else normalize_tags(v, "tags", tags),
        license=None if license is None else check_license(v, "license", license),
    )
    if changes == ModelChanges() and not v.items:
        v.add("update_mask", "name at least one of: name, description, type, tags, license")
    v.raise_if_any("model edit")
    return changes


def version_fields(
    name: str, base_model: str, trained_words: Iterable[str], changelog: str, early_access_days: int
) -> VersionFields:
    v = Violations()
    fields = VersionFields(
        name=check_name(v, "name", name),
        base_model=check_base_model(v, "base_model", base_model),
        trained_words=check_trained_words(v, "trained_words", trained_words),
        changelog=check_text(v, "changelog", changelog, MAX_CHANGELOG),
        early_access_days=check_early_access(v, "early_access_days", early_access_days),
    )
    v.raise_if_any("version")
    return fields


def version_changes(
    *,
    name: str | None = None,
    base_model: str | None = None,
    trained_words: Iterable[str] | None = None,
    changelog: str | None = None,
    early_access_days: int | None = None,
) -> VersionChanges:
    v = Violations()
    changes = VersionChanges(
        name=None if name is None else check_name(v, "name", name),
        base_model=None if base_model is None else check_base_model(v, "base_model", base_model),
        trained_words=None if trained_words is None else check_trained_words(v, "trained_words", trained_words),
        changelog=None if changelog is None else check_text(v, "changelog", changelog, MAX_CHANGELOG),
        early_access_days=None
        if early_access_days is None
        else check_early_access(v, "early_access_days", early_access_days),
    )
    if changes == VersionChanges() and not v.items:
        v.add("update_mask", "name at least one of: name, base_model, trained_words, changelog, early_access_days")
    v.raise_if_any("version edit")
    return changes


def parent_requests(parents: Sequence[ParentRequest]) -> tuple[ParentRequest, ...]:
    """Validate a parent declaration: relations, attribution, and the merge recipe.

    A declaration is either a merge recipe (every parent `merge`, at least two, weights in (0, 1] summing
    to 1 within 0.001) or parents of other relations, which carry no weight."""
    v = Violations()
    if len(parents) > MAX_PARENTS:
        v.add("parents", f"at most {MAX_PARENTS} parents; got {len(parents)}")
    seen: set[str] = set()
    cleaned: list[ParentRequest] = []
    for index, parent in enumerate(parents):
        field = f"parents[{index}]"
        version_id = parent.parent_version_id.strip()
        if not version_id:
            v.add(f"{field}.parent_version_id", "is required")
        elif version_id in seen:
            v.add(f"{field}.parent_version_id", f"{version_id} is declared twice")
        seen.add(version_id)
        check_text(v, f"{field}.attribution", parent.attribution, MAX_ATTRIBUTION)
        weight = parent.weight
        if parent.relation is Relation.MERGE:
            if not (math.isfinite(weight) and 0 < weight <= 1):
                v.add(f"{field}.weight", f"a merge weight must be in (0, 1]; got {weight}")
        elif weight != 0:
            v.add(f"{field}.weight", f"only merge parents carry a weight; got {weight} for {parent.relation.value}")
        cleaned.append(ParentRequest(version_id, parent.relation, weight, parent.attribution.strip()))
    merges = [p for p in cleaned if p.relation is Relation.MERGE]
    if merges:
        if len(merges) != len(cleaned):
            v.add("parents", "a merge recipe cannot be mixed with other relations: declare every parent as merge")
        elif len(merges) < 2:
            v.add("parents", "a merge needs at least two parents")
        total = math.fsum(p.weight for p in merges)
        if abs(total - 1.0) > MERGE_WEIGHT_TOLERANCE:
            v.add("parents", f"merge weights must sum to 1 (within {MERGE_WEIGHT_TOLERANCE}); they sum to {total:g}")
    v.raise_if_any("parents")
    return tuple(cleaned)


def check_reason(reason: str) -> str:
    v = Violations()
    reason = check_text(v, "reason", reason.strip(), MAX_REASON)
    v.raise_if_any("request")
    return reason


def check_request_id(request_id: str) -> str:
    v = Violations()
    request_id = check_text(v, "request_id", request_id.strip(), MAX_REQUEST_ID)
    v.raise_if_any("request")
    return request_id


def create_fingerprint(fields: ModelFields) -> str:
    """What a CreateModel asked for, as a digest: a retry with the same request id must ask the same."""
    import hashlib
    import json

    content = {
        "name": fields.name,
        "description": fields.description,
        "type": fields.type,
        "tags": list(fields.tags),
        "license": [
            fields.license.allow_no_credit,
            list(fields.license.allow_commercial_use),
            fields.license.allow_derivatives,
            fields.license.allow_different_license,
        ],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
