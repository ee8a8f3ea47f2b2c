"""manage.py importtsv: a file as a new document, or as a new version of one."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from documents.access import document_for_steerer, document_for_viewer
from documents.models import Document
from tests.documents.conftest import CORPUS, numbers_tsv


def importtsv(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("importtsv", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def tsv(tmp_path):
    def write(data: bytes, name: str = "prices.tsv"):
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    return write


def test_imports_a_new_document_and_prints_json_only(world, tsv):
    out, _ = importtsv(tsv(numbers_tsv(250)), "--tenant", "acme", "--json")
    result = json.loads(out)
    assert result == {"uuid": result["uuid"], "key": None}
    document = Document.objects.get(uuid=result["uuid"])
    assert (document.name, document.tenant, document.version, document.row_count) == (
        "prices",
        world.acme,
        1,
        250,
    )
    assert document_for_viewer(world.charlie, document.uuid) is None


def test_share_follow_and_steer_keys(world, tsv):
    follow = json.loads(
        importtsv(tsv(b"a\n1\n"), "--tenant", "acme", "--share", "follow", "--json")[0]
    )
    steer = json.loads(
        importtsv(tsv(b"a\n1\n"), "--tenant", "acme", "--name", "S", "--share", "steer", "--json")[
            0
        ]
    )
    assert document_for_viewer(None, follow["uuid"], key=follow["key"]) is not None
    assert document_for_steerer(None, follow["uuid"], key=follow["key"]) is None
    assert document_for_steerer(None, steer["uuid"], key=steer["key"]) is not None
    assert Document.objects.get(uuid=steer["uuid"]).name == "S"


def test_document_option_imports_a_new_version(world, acme_document, tsv):
    out, _ = importtsv(
        tsv(numbers_tsv(7)), "--tenant", "acme", "--document", str(acme_document.uuid), "--json"
    )
    assert json.loads(out) == {"uuid": str(acme_document.uuid), "key": acme_document.share_key}
    acme_document.refresh_from_db()
    assert (acme_document.version, acme_document.row_count, acme_document.name) == (2, 7, "numbers")


def test_document_option_can_share_for_steering(world, globex_document, tsv):
    out, _ = importtsv(
        tsv(b"a\n"), "--tenant", "globex", "--document", str(globex_document.uuid), "--json"
    )
    assert json.loads(out)["key"] == globex_document.share_key


def test_another_tenants_document_is_not_found(world, acme_document, tsv):
    with pytest.raises(CommandError, match="No document"):
        importtsv(tsv(b"a\n"), "--tenant", "globex", "--document", str(acme_document.uuid))
    with pytest.raises(CommandError, match="No document"):
        importtsv(tsv(b"a\n"), "--tenant", "acme", "--document", "not-a-uuid")
    assert Document.objects.get(pk=acme_document.pk).version == 1


def test_a_bad_file_is_a_clear_error_with_its_line(world, acme_document, tsv):
    path = tsv((CORPUS / "bad" / "unmatched_quote_line4.tsv").read_bytes(), "bad.tsv")
    with pytest.raises(CommandError, match=r"bad\.tsv: Line 4: unmatched quote"):
        importtsv(path, "--tenant", "acme", "--document", str(acme_document.uuid))
    assert Document.objects.get(pk=acme_document.pk).version == 1
    with pytest.raises(CommandError, match="Line 4"):
        importtsv(path, "--tenant", "acme")
    assert world.acme.documents.count() == 1


def test_missing_file_and_unknown_tenant_are_clear_errors(world, tsv):
    with pytest.raises(CommandError, match="Cannot read"):
        importtsv("/nonexistent/file.tsv", "--tenant", "acme")
    with pytest.raises(CommandError, match="No tenant"):
        importtsv(tsv(b"a\n"), "--tenant", "nope")


def test_without_json_it_says_what_it_did_and_warnings_go_to_stderr(world, tsv):
    out, err = importtsv(tsv(b"a\tb\n1\n"), "--tenant", "acme")
    assert out.startswith("Imported prices version 1: 1 rows, 2 columns.")
    assert "Line 2 had 1 of 2 fields; padded." in err


def test_a_comma_separated_file_is_imported_as_csv_and_says_so(world, tsv):
    out, err = importtsv(tsv(b'name,price\napple,1.5\n"pear, green",2\n'), "--tenant", "acme")
    assert out.startswith("Imported prices version 1: 2 rows, 2 columns.")
    assert "read as comma-separated" in err
