"""The model aggregate and command validation, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelhub.catalog.domain import commands
from modelhub.catalog.domain import events as ev
from modelhub.catalog.domain.commands import ParentRequest
from modelhub.catalog.domain.events import License
from modelhub.catalog.domain.model import Model
from modelhub.catalog.domain.vocabulary import ModelStatus, Relation, ScanResult, VersionStatus
from modelhub.core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

from .model_helpers import ALICE, BOB, MOD, a_file, fields, version

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def fresh() -> Model:
    model = Model.create("m1", ALICE, fields(), "", NOW)
    model.pending.clear()
    return model


def with_ready_version(model: Model, version_id: str = "v1") -> Model:
    model.create_version(ALICE, version_id, version(), NOW)
    model.add_file(ALICE, version_id, a_file(f"f-{version_id}", ScanResult.SUCCESS), NOW)
    model.pending.clear()
    return model


def fields_of(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


def test_model_fields_are_normalized() -> None:
    f = commands.model_fields("  Dreamy  ", "", "LORA", ["Anime", " anime ", "Big   Eyes"], License())
    assert (f.name, f.type, f.tags) == ("Dreamy", "LORA", ("anime", "big eyes"))


def test_every_bad_model_field_is_named_at_once() -> None:
    with pytest.raises(InvalidArgument) as error:
        commands.model_fields(
            "",
            "x" * 50_001,
            "Lora",  # Civitai's name is LORA
            [f"t{i}" for i in range(21)] + ["x" * 51],
            License(allow_commercial_use=("Image", "Resell")),
        )
    assert fields_of(error.value) == {
        "name",
        "description",
        "type",
        "tags",
        "tags[21]",
        "license.allow_commercial_use[1]",
    }
    assert "LORA" in next(v.description for v in error.value.violations if v.field == "type")


def test_version_fields_take_the_curated_base_model_spelling() -> None:
    assert commands.version_fields("v", " sdxl 1.0 ", [], "", 0).base_model == "SDXL 1.0"
    with pytest.raises(InvalidArgument) as error:
        commands.version_fields("v", "SDXL 9", ["w"] * 51 + [""], "", 31)
    assert fields_of(error.value) == {"base_model", "trained_words[51]", "early_access_days"}


def test_a_merge_recipe_needs_two_or_more_parents_whose_weights_sum_to_one() -> None:
    ok = commands.parent_requests(
        [
            ParentRequest("a", Relation.MERGE, 0.5),
            ParentRequest("b", Relation.MERGE, 0.3),
            ParentRequest("c", Relation.MERGE, 0.2),
        ]
    )
    assert [p.weight for p in ok] == [0.5, 0.3, 0.2]
    bad = [
        [ParentRequest("a", Relation.MERGE, 1.0)],
        [ParentRequest("a", Relation.MERGE, 0.5), ParentRequest("b", Relation.MERGE, 0.6)],
        [ParentRequest("a", Relation.MERGE, 0.5), ParentRequest("b", Relation.FINETUNE, 0.5)],
        [ParentRequest("a", Relation.FINETUNE, 0.5)],
        [ParentRequest("a", Relation.MERGE, float("nan")), ParentRequest("b", Relation.MERGE, 1.0)],
        [ParentRequest("a", Relation.FORK), ParentRequest("a", Relation.FINETUNE)],
    ]
    for parents in bad:
        with pytest.raises(InvalidArgument):
            commands.parent_requests(parents)


def test_drafts_are_invisible_to_others_and_edits_by_others_are_refused() -> None:
    model = fresh()
    assert model.visible_to(ALICE) and model.visible_to(MOD)
    assert not model.visible_to(BOB) and not model.visible_to(None)
    with pytest.raises(NotFound):
        model.require_editor(BOB)
    model = with_ready_version(model)
    model.publish(ALICE, NOW)
    assert model.visible_to(None)
    with pytest.raises(PermissionDenied):
        model.require_editor(BOB)
    model.require_editor(MOD)


def test_publishing_needs_a_version_whose_files_are_all_clean() -> None:
    model = fresh()
    with pytest.raises(FailedPrecondition, match="no version"):
        model.publish(ALICE, NOW)
    model.create_version(ALICE, "v1", version(), NOW)
    with pytest.raises(FailedPrecondition, match="no file"):
        model.publish(ALICE, NOW)
    model.add_file(ALICE, "v1", a_file("f1"), NOW)
    with pytest.raises(FailedPrecondition, match="not scanned clean"):
        model.publish(ALICE, NOW)
    model.record_scan("v1", "f1", ScanResult.DANGER, "os.system", NOW)
    with pytest.raises(FailedPrecondition, match="Danger"):
        model.publish(ALICE, NOW)
    model.record_scan("v1", "f1", ScanResult.SUCCESS, "", NOW)
    model.pending.clear()
    model.publish(ALICE, NOW)
    assert [type(e) for e in model.pending] == [ev.ModelPublished, ev.VersionPublished]
    assert model.status == ModelStatus.PUBLISHED
    assert model.versions["v1"].status == VersionStatus.PUBLISHED


def test_a_version_is_published_once_whatever_happens_to_the_model() -> None:
    model = with_ready_version(fresh())
    model.publish(ALICE, NOW)
    model.unpublish(ALICE, "later", False, NOW)
    model.publish(ALICE, NOW)
    model.publish(ALICE, NOW)  # a retry: nothing new
    model.publish_version(ALICE, "v1", NOW)
    published = [e for e in model.pending if isinstance(e, ev.VersionPublished)]
    assert len(published) == 1
    assert model.published_at == NOW


def test_a_due_schedule_publishes_and_one_that_cannot_is_cancelled() -> None:
    later = NOW + timedelta(hours=1)
    model = with_ready_version(fresh())
    model.publish(ALICE, NOW, later)
    assert (model.status, model.scheduled_at) == (ModelStatus.SCHEDULED, later)
    model.publish_due(NOW)  # not due yet
    assert model.status == ModelStatus.SCHEDULED
    model.publish_due(later)
    assert model.status == ModelStatus.PUBLISHED
    assert model.versions["v1"].published_at == later

    model = with_ready_version(fresh())
    model.publish(ALICE, NOW, later)
    model.add_file(ALICE, "v1", a_file("f-pending"), NOW)  # the only version is no longer ready
    model.pending.clear()
    model.publish_due(later)
    assert [type(e) for e in model.pending] == [ev.PublicationCancelled]
    assert model.status == ModelStatus.DRAFT


def test_only_moderators_unpublish_for_a_violation_and_only_they_republish() -> None:
    model = with_ready_version(fresh())
    model.publish(ALICE, NOW)
    with pytest.raises(PermissionDenied):
        model.unpublish(ALICE, "spam", True, NOW)
    model.unpublish(MOD, "rules", True, NOW)
    assert model.status == ModelStatus.UNPUBLISHED_VIOLATION
    model.unpublish(ALICE, "mine", False, NOW)  # does not soften a violation
    assert model.status == ModelStatus.UNPUBLISHED_VIOLATION
    with pytest.raises(PermissionDenied, match="moderator"):
        model.publish(ALICE, NOW)
    model.publish(MOD, NOW)
    assert model.status == ModelStatus.PUBLISHED


def test_a_published_model_keeps_a_published_version_and_its_clean_file() -> None:
    model = with_ready_version(fresh())
    model.publish(ALICE, NOW)
    with pytest.raises(FailedPrecondition, match="last published version"):
        model.delete_version(ALICE, "v1", NOW)
    with pytest.raises(FailedPrecondition, match="last clean file"):
        model.remove_file(ALICE, "v1", "f-v1", NOW)
    model.delete(ALICE, NOW)
    assert model.status == ModelStatus.DELETED
    with pytest.raises(FailedPrecondition, match="deleted"):
        model.update(ALICE, commands.ModelChanges(name="x"), NOW)


def test_version_publication_needs_a_published_model() -> None:
    model = with_ready_version(fresh())
    with pytest.raises(FailedPrecondition, match="PublishModel"):
        model.publish_version(ALICE, "v1", NOW)


def test_files_are_idempotent_by_id_and_unique_by_name() -> None:
    model = with_ready_version(fresh())
    model.add_file(ALICE, "v1", a_file("f-v1", ScanResult.SUCCESS), NOW)  # the same file again: a retry
    assert model.pending == []
    with pytest.raises(Exception, match="named"):
        model.add_file(ALICE, "v1", a_file("f-other", name="f-v1.safetensors"), NOW)
    model.record_scan("v1", "f-v1", ScanResult.SUCCESS, "", NOW)  # same verdict: nothing new
    model.record_scan("v1", "gone", ScanResult.SUCCESS, "", NOW)  # removed file: nothing
    assert model.pending == []


def test_edits_that_change_nothing_record_nothing() -> None:
    model = fresh()
    model.update(ALICE, commands.model_changes(name="Dreamy", tags=["ANIME"]), NOW)
    assert model.pending == []
    with pytest.raises(InvalidArgument):
        commands.model_changes()


def test_state_folds_identically_from_its_events() -> None:
    model = with_ready_version(fresh())
    model.declare_parents(ALICE, "v1", (ev.Parent("m0", "p0", Relation.FINETUNE, 0.0, "thanks"),), NOW)
    model.publish(ALICE, NOW, NOW + timedelta(days=1))
    model.publish_due(NOW + timedelta(days=1))
    history = [
        ev.ModelCreated("m1", "alice", "Alice", "Dreamy", "a model", "Checkpoint", ("anime",), License(), "", NOW),
        ev.VersionCreated("m1", "v1", "v1", "SDXL 1.0", ("dreamy",), "first", 0, "alice", NOW),
        ev.FileAdded("m1", "v1", a_file("f-v1", ScanResult.SUCCESS), "alice", NOW),
        *model.pending,
    ]
    replayed = Model("m1")
    for event in history:
        replayed.apply(event)
    assert replayed.status == model.status == ModelStatus.PUBLISHED
    assert replayed.versions == model.versions
