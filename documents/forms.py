from pathlib import PurePath

from django import forms
from django.conf import settings

from tenants.models import Tenant


class UploadForm(forms.Form):
    """A TSV file: a new version of a document."""

    file = forms.FileField(
        label="TSV file",
        widget=forms.ClearableFileInput(
            attrs={"accept": ".tsv,.tab,.txt,text/tab-separated-values"}
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.DOCUMENT_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; at most {limit:,} are accepted.",
                code="too_large",
            )
        return upload


class DocumentCreateForm(UploadForm):
    """A new document: its tenant (one where the user may upload), a name and a file."""

    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none(), empty_label=None)
    name = forms.CharField(max_length=200, required=False, help_text="Defaults to the file's name.")

    field_order = ["tenant", "name", "file"]

    def __init__(self, *args, tenants: list[Tenant], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tenant_field = self.fields["tenant"]
        assert isinstance(tenant_field, forms.ModelChoiceField)
        tenant_field.queryset = Tenant.objects.filter(pk__in=[t.pk for t in tenants])

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is not None and not cleaned.get("name"):
            cleaned["name"] = PurePath(upload.name).stem[:200] or "Untitled"
        return cleaned


class ShareForm(forms.Form):
    share = forms.ChoiceField(
        choices=[
            ("off", "Not shared"),
            ("follow", "Anyone with the link may follow"),
            ("steer", "Anyone with the link may turn pages and upload"),
        ]
    )
    new_key = forms.BooleanField(required=False, label="New link (the old one stops working)")
