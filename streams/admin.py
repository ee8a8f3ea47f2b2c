"""Admin of feeds and producers: the operator's console (scoping: tenants/admin_base.py).

Every write goes through streams.services, which audits it and announces
access changes so that open connections re-check within a moment
(streamsite/control.py). Tokens and share keys are never form fields; new
ones are shown once, on the next page.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import redis
from django import forms
from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from streams.events import feed_group
from streams.models import Feed, Producer, ProducerKind
from streams.producers import LOOPS, ConfigError, validate_config
from streams.services import (
    FEED_SETTINGS,
    feed_create,
    feed_settings_update,
    feed_share_key_revoke,
    feed_share_key_rotate,
    producer_create,
    producer_set_enabled,
    producer_token_revoke,
    producer_token_rotate,
    producer_update,
)
from streamsite import metrics
from tenants import quotas
from tenants.admin_base import (
    ObjectActionsAdmin,
    ShareKeyAdmin,
    ShareKeyServices,
    WatchingAdmin,
    adopt,
    ago,
    object_action,
    owned_tenant_ids,
    show_secret_once,
)

log = logging.getLogger(__name__)

# A running producer heartbeats every 5 s (streams.producers.run_until_stopped).
STALE_AFTER = timedelta(seconds=30)


class FeedAddForm(forms.ModelForm):
    share = forms.BooleanField(
        required=False, help_text="Give it a share key now (the link is shown once)."
    )

    class Meta:
        model = Feed
        fields = ["tenant", "name", "kind"]

    def clean_tenant(self):
        tenant = self.cleaned_data["tenant"]
        try:
            quotas.check_feed_create(tenant, lock=False)  # feed_create checks again, locked
        except quotas.QuotaExceeded as exc:
            raise forms.ValidationError(exc.message, code="quota_exceeded") from None
        return tenant


@admin.register(Feed)
class FeedAdmin(WatchingAdmin, ShareKeyAdmin):
    share_key_services = ShareKeyServices(
        arg="feed", rotate=feed_share_key_rotate, revoke=feed_share_key_revoke
    )
    list_display = ["name", "tenant", "kind", "last_seq", "has_share_key", "watching_count"]
    list_filter = ["kind", ("tenant", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["name"]
    readonly_fields = [
        "tenant", "kind", "uuid", "live_page", "created_at", "has_share_key",
        "watching_now", "last_seq", "producer_links",
    ]  # fmt: skip

    def presence_group(self, feed: Feed) -> str:
        return feed_group(feed.uuid)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["tenant", "name", "kind", "share"]})]
        return [
            (None, {"fields": ["name", "tenant", "kind", "uuid", "live_page", "created_at"]}),
            ("Live", {"fields": ["watching_now"]}),
            ("Sharing", {"fields": ["has_share_key", "allowed_origins"]}),
            (
                "Samples",
                {"fields": ["last_seq", "retention_count", "retention_seconds", "producer_links"]},
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = FeedAddForm
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="live page")
    def live_page(self, feed: Feed) -> str:
        return format_html('<a href="{0}">{0}</a>', feed.get_absolute_url())

    @admin.display(description="producers")
    def producer_links(self, feed: Feed) -> str:
        rows = [
            (reverse("admin:streams_producer_change", args=[p.pk]), p, producer_state(p))
            for p in feed.producers.all()
        ]
        if not rows:
            return "-"
        return format_html_join(mark_safe("<br>"), '<a href="{}">{}</a> ({})', rows)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # deleting is left out: revoke the share key, disable the producers

    def save_model(self, request, obj, form, change):
        if change:
            fresh = Feed.objects.select_related("tenant").get(pk=obj.pk)
            settings = {name: getattr(obj, name) for name in FEED_SETTINGS if name in form.fields}
            feed_settings_update(feed=fresh, actor=request.user, **settings)
            return
        share = form.cleaned_data["share"]
        feed = feed_create(
            tenant=obj.tenant, name=obj.name, kind=obj.kind, share=share, actor=request.user
        )
        adopt(obj, feed)
        if share:
            link = request.build_absolute_uri(f"{feed.get_absolute_url()}?key={feed.share_key}")
            show_secret_once(request, f"Share link for {feed}:", link)


class FeedChoiceField(forms.ModelChoiceField):
    """A feed picker that tells apart feeds of the same name: name, tenant and UUID."""

    def label_from_instance(self, feed: Feed) -> str:
        return f"{feed.name} · {feed.tenant.slug} · {feed.uuid}"


def _interval(initial: int) -> forms.IntegerField:
    return forms.IntegerField(
        label="interval (ms)", min_value=1, max_value=3_600_000, initial=initial,
        help_text="Milliseconds between two samples.",
    )  # fmt: skip


def _chance(label: str, initial: float, help_text: str) -> forms.FloatField:
    return forms.FloatField(
        label=label, min_value=0.0, max_value=1.0, initial=initial, help_text=help_text
    )


def config_fields(kind: str, feeds: models.QuerySet[Feed]) -> dict[str, forms.Field]:
    """The typed form fields of a producer kind's config (streams.producers.validate_config
    checks the same ranges). Feed fields pick among ``feeds`` and store the UUID."""
    if kind == ProducerKind.BERNOULLI:
        return {
            "p": _chance("p", 0.72, "Chance of a 1 in each sample."),
            "interval_ms": _interval(100),
        }
    if kind == ProducerKind.RANDOM_WALK:
        return {
            "step": forms.FloatField(min_value=0.0, max_value=1e12, initial=1.0,
                                     help_text="Standard deviation of each step."),
            "start": forms.FloatField(min_value=-1e12, max_value=1e12, initial=0.0,
                                      help_text="The first value."),
            "interval_ms": _interval(100),
        }  # fmt: skip
    if kind == ProducerKind.CLOCK:
        return {
            "interval_ms": _interval(1000),
            "count": forms.IntegerField(min_value=0, initial=0,
                                        help_text="Ticks before it finishes; 0: forever."),
            "ack_feed": FeedChoiceField(feeds, required=False, label="acknowledged by",
                                        help_text="Wait after each tick until this feed (the pin) "
                                        "publishes a sample for it. Optional."),
            "ack_timeout_ms": forms.IntegerField(label="acknowledgement timeout (ms)",
                                                 min_value=1, max_value=3_600_000, initial=5000),
        }  # fmt: skip
    if kind == ProducerKind.IOPIN:
        return {
            "source": FeedChoiceField(feeds, help_text="The clock whose ticks it answers."),
            "chance": _chance("chance", 0.5, "Chance that the pin toggles on a tick."),
        }
    if kind == ProducerKind.BUZZER:
        return {"source": FeedChoiceField(feeds, help_text="The pin it listens to.")}
    return {}  # external: a token, no config


def config_field_names(kind: str) -> list[str]:
    return list(config_fields(kind, Feed.objects.none()))


class ProducerConfigForm(forms.ModelForm):
    """A producer form with the typed fields of one kind; ``clean`` makes them ``config``.

    ProducerAdmin.get_form derives a class per request (``for_kind``): the
    kind's fields, offering ``feeds`` (those of the tenants the user manages).
    """

    config_kind: str = ProducerKind.EXTERNAL
    feeds: models.QuerySet[Feed] = Feed.objects.none()

    @classmethod
    def for_kind(cls, kind: str, feeds: models.QuerySet[Feed]) -> type[ProducerConfigForm]:
        attrs = {**config_fields(kind, feeds), "config_kind": kind, "feeds": feeds}
        return type(f"{cls.__name__}_{kind}", (cls,), attrs)

    def tenant_id(self) -> int | None:
        raise NotImplementedError

    def clean(self):
        cleaned = super().clean()
        config: dict[str, Any] = {}
        for name in config_field_names(self.config_kind):
            value = cleaned.get(name)
            if isinstance(value, Feed):
                if value.tenant_id != self.tenant_id():
                    self.add_error(name, "Pick a feed of the producer's own tenant.")
                value = str(value.uuid)
            if value is not None:
                config[name] = value
        try:
            cleaned["config"] = validate_config(self.config_kind, config)
        except ConfigError as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned


KIND_HELP = (
    "The fields below are this kind's settings; to make another kind, pick it here: {links}. "
    "A running producer takes a change when it next starts (disable and enable it to "
    "restart it now)."
)


class ProducerAddForm(ProducerConfigForm):
    class Meta:
        model = Producer
        fields = ["feed", "name", "kind", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        self.fields["name"].help_text = "Default: '<kind> for <feed>'."
        self.fields["kind"].initial = self.config_kind
        links = format_html_join(
            ", ", '<a href="?kind={0}">{0}</a>', ((kind,) for kind in ProducerKind.values)
        )
        self.fields["kind"].help_text = format_html(KIND_HELP, links=links)
        # Another kind has other fields: reload the page with it.
        self.fields["kind"].widget.attrs["onchange"] = (
            "location.search = '?kind=' + encodeURIComponent(this.value)"
        )

    def clean_kind(self):
        kind = self.cleaned_data["kind"]
        if kind != self.config_kind:
            raise forms.ValidationError("The kind changed: fill in its settings below.")
        return kind

    def tenant_id(self) -> int | None:
        feed = self.cleaned_data.get("feed")
        return feed.tenant_id if feed is not None else None


class ProducerChangeForm(ProducerConfigForm):
    class Meta:
        model = Producer
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.instance.config or {}
        for name in config_field_names(self.config_kind):
            if name not in config:
                continue
            if isinstance(self.fields[name], FeedChoiceField):
                self.initial[name] = self.feeds.filter(uuid=config[name]).first()
            else:
                self.initial[name] = config[name]

    def tenant_id(self) -> int | None:
        return self.instance.tenant_id


def requested_kind(request: HttpRequest) -> str:
    """The kind a new producer's form is for: the one posted, else ``?kind=``, else bernoulli."""
    raw = request.POST.get("kind") or request.GET.get("kind")
    return raw if raw in ProducerKind.values else ProducerKind.BERNOULLI


def producer_state(producer: Producer) -> str:
    """What the producer reported last, flagged when a running one stopped heartbeating."""
    status = producer.status or ("never ran" if producer.kind in LOOPS else "-")
    seen = producer.last_seen_at
    if producer.enabled and status == "running" and seen:
        if timezone.now() - seen > STALE_AFTER:
            return f"running? no heartbeat for {timesince(seen)}"
    return status


@admin.register(Producer)
class ProducerAdmin(ObjectActionsAdmin):
    list_display = [
        "name", "feed", "kind", "enabled", "state", "last_seen", "samples_per_minute", "token",
    ]  # fmt: skip
    list_filter = [
        "kind", "enabled", ("tenant", admin.RelatedOnlyFieldListFilter),
        ("feed", admin.RelatedOnlyFieldListFilter),
    ]  # fmt: skip
    list_select_related = ["feed", "feed__tenant", "tenant"]
    search_fields = ["name"]
    object_actions = ("rotate_token", "revoke_token", "enable", "disable")
    readonly_fields = [
        "tenant", "feed", "kind", "uuid", "enabled", "state", "last_seen",
        "samples_per_minute", "token", "created_at",
    ]  # fmt: skip

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["feed", "name", "kind", *config_field_names(requested_kind(request)), "enabled"]
        return [
            "name", "tenant", "feed", "kind", "uuid", "enabled", "state", "last_seen",
            "samples_per_minute", "token", *config_field_names(obj.kind), "created_at",
        ]  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_form(self, request, obj=None, **kwargs):
        feeds = self.scoped_feeds(request)
        if obj is None:
            kwargs["form"] = ProducerAddForm.for_kind(requested_kind(request), feeds)
        else:
            kwargs["form"] = ProducerChangeForm.for_kind(obj.kind, feeds)
        return super().get_form(request, obj, **kwargs)

    def scoped_feeds(self, request: HttpRequest) -> models.QuerySet[Feed]:
        feeds = Feed.objects.select_related("tenant").order_by("tenant__slug", "name")
        owned = owned_tenant_ids(request)
        return feeds if owned is None else feeds.filter(tenant_id__in=owned)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "feed":
            kwargs["form_class"] = FeedChoiceField
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # deleting is left out: revoke the token or disable it

    @admin.display(description="status")
    def state(self, producer: Producer) -> str:
        return producer_state(producer)

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, producer: Producer) -> str:
        seen = producer.last_seen_at
        if seen is None:
            return "never"
        return format_html('<span title="{}">{}</span>', seen.isoformat(), ago(seen))

    @admin.display(description="feed samples/min")
    def samples_per_minute(self, producer: Producer) -> int | str:
        """Of the producer's feed, in the last full minute (the counters are per feed)."""
        try:
            return metrics.samples_last_full_minute(str(producer.feed.uuid))
        except (redis.RedisError, OSError) as exc:
            log.warning("admin: sample counters unavailable (%s)", exc)
            return "?"

    @admin.display(description="token")
    def token(self, producer: Producer) -> str:
        return f"{producer.token_prefix}…" if producer.token_hash else "revoked"

    def save_model(self, request, obj, form, change):
        config = form.cleaned_data["config"]
        if change:
            fresh = Producer.objects.select_related("tenant").get(pk=obj.pk)
            producer_update(producer=fresh, name=obj.name, config=config, actor=request.user)
            return
        producer, token = producer_create(
            feed=obj.feed,
            kind=obj.kind,
            name=obj.name,
            config=config,
            enabled=obj.enabled,
            actor=request.user,
        )
        adopt(obj, producer)
        show_secret_once(request, f"Token for {producer}:", token)

    @object_action(
        "Rotate token",
        confirm="Make a new token? Connections using the old one are closed.",
    )
    def rotate_token(self, request: HttpRequest, producer: Producer) -> None:
        token = producer_token_rotate(producer=producer, actor=request.user)
        show_secret_once(request, f"New token for {producer}:", token)

    @object_action(
        "Revoke token",
        shown=lambda producer: bool(producer.token_hash),
        confirm="Revoke the token? Connections using it are closed.",
    )
    def revoke_token(self, request: HttpRequest, producer: Producer) -> None:
        producer_token_revoke(producer=producer, actor=request.user)
        messages.success(request, f"The token of {producer} is revoked.")

    @object_action("Enable", shown=lambda producer: not producer.enabled)
    def enable(self, request: HttpRequest, producer: Producer) -> None:
        producer_set_enabled(producer=producer, enabled=True, actor=request.user)
        messages.success(request, f"{producer} is enabled; runproducers starts it within seconds.")

    @object_action(
        "Disable",
        shown=lambda producer: producer.enabled,
        confirm="Disable this producer? runproducers stops it and its connections close.",
    )
    def disable(self, request: HttpRequest, producer: Producer) -> None:
        producer_set_enabled(producer=producer, enabled=False, actor=request.user)
        messages.success(request, f"{producer} is disabled; runproducers stops it within seconds.")
