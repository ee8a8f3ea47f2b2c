"""HTTP: the document list, the live page, uploads, the export, sharing."""

from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from documents.models import Document
from documents.selectors import document_current_page
from documents.services import document_create, document_share_set
from tests.documents.conftest import CORPUS, numbers_tsv

JSON = {"Accept": "application/json"}


def signed_in(user, *, csrf=False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


def tsv_file(data: bytes, name: str = "upload.tsv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="text/tab-separated-values")


def upload_url(document, key=None) -> str:
    return reverse("document-upload", args=[document.uuid]) + (f"?key={key}" if key else "")


def downloaded(response) -> str:
    """The body of a streamed export, as the browser saves it."""
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def version_of(document) -> int:
    return Document.objects.get(pk=document.pk).version


# -- the list and creating documents ------------------------------------------


def test_list_needs_sign_in(client, world):
    response = client.get(reverse("document-list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_list_shows_only_the_documents_of_my_tenants(world, acme_document, globex_document):
    bob_page = signed_in(world.bob).get(reverse("document-list")).content.decode()
    assert "numbers" in bob_page and "secret" not in bob_page
    charlie_page = signed_in(world.charlie).get(reverse("document-list")).content.decode()
    assert "secret" in charlie_page and "numbers" not in charlie_page


def test_the_nav_links_to_documents(world):
    page = signed_in(world.bob).get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("document-list")}"' in page


def test_create_form_posts_with_csrf_and_opens_the_new_document(world):
    client = signed_in(world.alice, csrf=True)
    page = client.get(reverse("document-list"))
    assert 'type="file"' in page.content.decode()
    form = {"tenant": world.acme.pk, "name": "", "file": tsv_file(numbers_tsv(5), "cities.tsv")}
    assert client.post(reverse("document-list"), form).status_code == 403  # no CSRF token
    token = page.cookies["csrftoken"].value
    form["file"] = tsv_file(numbers_tsv(5), "cities.tsv")
    response = client.post(reverse("document-list"), {**form, "csrfmiddlewaretoken": token})
    document = Document.objects.get(name="cities")
    assert response.status_code == 302 and response["Location"] == document.get_absolute_url()
    assert (document.tenant, document.row_count, document.uploaded_by) == (
        world.acme,
        5,
        world.alice,
    )


def test_create_answers_json_to_scripts(world):
    response = signed_in(world.alice).post(
        reverse("document-list"),
        {"tenant": world.acme.pk, "name": "n", "file": tsv_file(numbers_tsv(3))},
        headers=JSON,
    )
    body = response.json()
    assert response.status_code == 200 and body["type"] == "uploaded" and body["version"] == 1
    assert body["url"] == Document.objects.get(uuid=body["uuid"]).get_absolute_url()


def test_create_with_a_bad_file_says_which_line_and_creates_nothing(world):
    data = (CORPUS / "bad" / "unmatched_quote_line4.tsv").read_bytes()
    form = {"tenant": world.acme.pk, "name": "q", "file": tsv_file(data)}
    response = signed_in(world.alice).post(reverse("document-list"), form, headers=JSON)
    assert response.status_code == 400
    assert {k: response.json()[k] for k in ("error", "reason", "line")} == {
        "error": "invalid_tsv",
        "reason": "unmatched_quote",
        "line": 4,
    }
    form["file"] = tsv_file(data)
    page = signed_in(world.alice).post(reverse("document-list"), form)
    assert page.status_code == 400 and "Line 4: unmatched quote" in page.content.decode()
    assert not Document.objects.filter(name="q").exists()


def test_viewers_and_strangers_cannot_create_in_a_tenant(world):
    for user in (world.bob, world.charlie):
        form = {"tenant": world.acme.pk, "name": "x", "file": tsv_file(numbers_tsv(1))}
        response = signed_in(user).post(reverse("document-list"), form, headers=JSON)
        assert response.status_code == 400
    assert not world.acme.documents.exists()
    assert 'type="file"' not in signed_in(world.bob).get(reverse("document-list")).content.decode()


# -- the live page ------------------------------------------------------------


def test_member_sees_the_current_page_rendered_on_the_server(world, acme_document):
    response = signed_in(world.bob).get(acme_document.get_absolute_url())
    page = response.content.decode()
    assert response.status_code == 200
    assert "<th>square</th>" in page and "<td>10000</td>" in page  # row 100: 100, 10000
    assert "<td>40401</td>" not in page  # row 201 is on page 3
    assert 'id="watching"' in page and str(acme_document.uuid) in page


def test_short_rows_under_a_wide_header_render_as_their_cells_and_one_spanning_cell(world):
    header = "\t".join(f"c{n}" for n in range(1, 1001))
    data = (header + "\n" + "x\n" * 30_000 + "1\t2\n").encode()
    document = document_create(tenant=world.acme, name="wide", data=data).document

    page = signed_in(world.bob).get(document.get_absolute_url()).content.decode()

    row = '<tr><td class="rowno">1</td><td>x</td><td class="pad" colspan="999"></td></tr>'
    assert row in page
    # The header's 1,000 names, then 100 short rows: not 100 x 1,000 cells.
    assert len(page) < 100_000


def test_owner_gets_steering_upload_and_sharing_follower_does_not(world, acme_document):
    owner = signed_in(world.alice).get(acme_document.get_absolute_url()).content.decode()
    follower = signed_in(world.bob).get(acme_document.get_absolute_url()).content.decode()
    for marker in ('data-go="next"', 'id="upload"', "Sharing"):
        assert marker in owner and marker not in follower


def test_stranger_gets_404_for_another_tenants_document(world, acme_document):
    stranger = signed_in(world.charlie)
    assert stranger.get(acme_document.get_absolute_url()).status_code == 404
    export = reverse("document-export", args=[acme_document.uuid])
    assert stranger.get(export).status_code == 404


def test_anonymous_is_sent_to_sign_in_and_a_share_key_opens_the_page(client, acme_document):
    url = acme_document.get_absolute_url()
    assert "/accounts/login/" in client.get(url)["Location"]
    assert client.get(f"{url}?key={acme_document.share_key}").status_code == 200
    assert client.get(f"{url}?key=wrong").status_code == 404
    assert client.get(f"{url}?key={acme_document.uuid}").status_code == 404


# -- uploading a new version --------------------------------------------------


def test_upload_with_csrf_makes_a_new_version_and_notifies_viewers(
    world, acme_document, django_capture_on_commit_callbacks
):
    client = signed_in(world.alice, csrf=True)
    token = client.get(acme_document.get_absolute_url()).cookies["csrftoken"].value
    assert client.post(upload_url(acme_document), {"file": tsv_file(b"a\n1\n")}).status_code == 403
    with mock.patch("streamsite.hub.publish") as publish:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                upload_url(acme_document),
                {"file": tsv_file(b"a\tb\n1\n"), "csrfmiddlewaretoken": token},
                headers=JSON,
            )
    assert response.status_code == 200
    assert response.json() == {
        "type": "uploaded",
        "version": 2,
        "row_count": 1,
        "warnings": ["Line 2 had 1 of 2 fields; padded."],
        "uuid": str(acme_document.uuid),
        "url": acme_document.get_absolute_url(),
    }
    publish.assert_called_once()
    assert publish.call_args.args[0] == f"document.{acme_document.uuid}"


def test_upload_of_a_comma_separated_file_answers_its_warning(world, acme_document):
    client = signed_in(world.alice, csrf=True)
    token = client.get(acme_document.get_absolute_url()).cookies["csrftoken"].value
    with mock.patch("streamsite.hub.publish"):
        response = client.post(
            upload_url(acme_document),
            {"file": tsv_file(b"a,b\n1,2\n3,4\n"), "csrfmiddlewaretoken": token},
            headers=JSON,
        )
    assert response.status_code == 200
    assert response.json()["row_count"] == 2
    assert response.json()["warnings"] == [
        "The file has no tabs and its lines are separated by commas, "
        "so it was read as comma-separated (CSV), 2 columns."
    ]


@pytest.mark.parametrize(
    "name,reason,line",
    [
        ("too_many_columns_line3.tsv", "too_many_columns", 3),
        ("nul_byte_line3.tsv", "binary", 3),
        ("utf16_damaged_line2.tsv", "encoding", 2),
    ],
)
def test_a_bad_upload_answers_400_with_the_line_and_keeps_the_version(
    world, acme_document, name, reason, line
):
    before = document_current_page(acme_document.pk)
    data = (CORPUS / "bad" / name).read_bytes()
    response = signed_in(world.alice).post(
        upload_url(acme_document), {"file": tsv_file(data)}, headers=JSON
    )
    body = response.json()
    assert response.status_code == 400
    assert (body["type"], body["error"], body["reason"], body["line"]) == (
        "error",
        "invalid_tsv",
        reason,
        line,
    )
    assert body["message"].startswith(f"Line {line}: ")
    assert document_current_page(acme_document.pk) == before


def test_a_plain_form_upload_redirects_or_shows_the_error_on_the_page(world, acme_document):
    client = signed_in(world.alice)
    ok = client.post(upload_url(acme_document), {"file": tsv_file(numbers_tsv(2))})
    assert ok.status_code == 302 and ok["Location"] == acme_document.get_absolute_url()
    bad = client.post(upload_url(acme_document), {"file": tsv_file(b'a\n"oops\n')})
    assert bad.status_code == 400 and "Line 2: unmatched quote" in bad.content.decode()
    assert version_of(acme_document) == 2


def test_upload_over_the_size_limit_is_413_and_without_a_file_400(world, acme_document, settings):
    client = signed_in(world.alice)
    settings.DOCUMENT_MAX_BYTES = 100
    big = client.post(upload_url(acme_document), {"file": tsv_file(numbers_tsv(50))}, headers=JSON)
    assert big.status_code == 413 and big.json()["error"] == "too_large"
    none = client.post(upload_url(acme_document), {}, headers=JSON)
    assert none.status_code == 400 and none.json()["error"] == "bad_request"
    assert version_of(acme_document) == 1


def test_followers_and_strangers_cannot_upload(world, acme_document):
    for user in (world.bob, world.charlie, None):
        response = signed_in(user).post(
            upload_url(acme_document), {"file": tsv_file(numbers_tsv(1))}, headers=JSON
        )
        assert response.status_code == 404
        # A script asked for JSON: the error shape of docs/openapi.json, not Django's page.
        assert response.json()["error"] == "not_found"
    follow_key = upload_url(acme_document, acme_document.share_key)
    assert signed_in(None).post(follow_key, {"file": tsv_file(b"a\n")}).status_code == 404
    assert version_of(acme_document) == 1


def test_an_upload_without_its_csrf_token_is_refused_as_json_or_as_a_page(world, acme_document):
    client = signed_in(world.alice, csrf=True)
    url = upload_url(acme_document)
    refused = client.post(url, {"file": tsv_file(numbers_tsv(2))}, headers=JSON)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden" and "CSRF" in refused.json()["message"]
    page = client.post(url, {"file": tsv_file(numbers_tsv(2))})
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
    assert version_of(acme_document) == 1


def test_a_key_that_allows_steering_may_upload_without_an_account(world, acme_document):
    document_share_set(document=acme_document, share="steer")
    client = Client(enforce_csrf_checks=True)
    url = f"{acme_document.get_absolute_url()}?key={acme_document.share_key}"
    page = client.get(url)
    assert 'id="upload"' in page.content.decode()
    response = client.post(
        upload_url(acme_document, acme_document.share_key),
        {"file": tsv_file(numbers_tsv(2)), "csrfmiddlewaretoken": page.cookies["csrftoken"].value},
        headers=JSON,
    )
    assert response.status_code == 200 and version_of(acme_document) == 2
    assert Document.objects.get(pk=acme_document.pk).uploaded_by is None


# -- export -------------------------------------------------------------------


def test_export_is_an_attachment_with_formulas_neutralised(world):
    data = b"name\tvalue\n=cmd|' /C calc'!A0\t-3\n@SUM(A1)\t+1\nplain\t2\n"
    document = document_create(tenant=world.acme, name="evil", data=data).document
    response = signed_in(world.bob).get(reverse("document-export", args=[document.uuid]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/tab-separated-values; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="evil v1.tsv"'
    assert downloaded(response) == (
        "name\tvalue\n'=cmd|' /C calc'!A0\t'-3\n'@SUM(A1)\t'+1\nplain\t2\n"
    )


def test_export_writes_short_rows_full_as_before(world):
    data = b"a\tb\tc\n1\n2\t3\n4\t5\t6\n"
    document = document_create(tenant=world.acme, name="r", data=data).document
    response = signed_in(world.bob).get(reverse("document-export", args=[document.uuid]))
    assert downloaded(response) == "a\tb\tc\n1\t\t\n2\t3\t\n4\t5\t6\n"


def test_export_of_a_name_with_a_line_break(world):
    document = document_create(tenant=world.acme, name="two\nlines", data=b"a\n1\n").document
    response = signed_in(world.alice).get(reverse("document-export", args=[document.uuid]))
    assert response["Content-Disposition"] == 'attachment; filename="two lines v1.tsv"'
    # Read to the end, as a server does: an abandoned export's generator holds a
    # PostgreSQL server-side cursor, and closing it from the garbage collector in
    # the middle of another query on the same connection deadlocks.
    assert downloaded(response) == "a\n1\n"


def test_export_with_the_share_key_and_of_every_row(client, acme_document):
    url = reverse("document-export", args=[acme_document.uuid])
    response = client.get(f"{url}?key={acme_document.share_key}")
    lines = downloaded(response).splitlines()
    assert len(lines) == 251 and lines[-1] == "250\t62500\tv1"
    assert client.get(f"{url}?key=wrong").status_code == 404


# -- sharing ------------------------------------------------------------------


def test_owner_changes_sharing_others_get_404(world, acme_document):
    url = reverse("document-share", args=[acme_document.uuid])
    old_key = acme_document.share_key
    for user in (world.bob, world.charlie):
        assert signed_in(user).post(url, {"share": "off"}).status_code == 404
    assert signed_in(world.alice).post(url, {"share": "steer", "new_key": "on"}).status_code == 302
    acme_document.refresh_from_db()
    assert acme_document.share_can_steer and acme_document.share_key not in (None, old_key)
    signed_in(world.alice).post(url, {"share": "off"})
    acme_document.refresh_from_db()
    assert acme_document.share_key is None
