"""
Staff screens. A counter's value changes only through actions that call the
services under the row lock; the change form edits the other fields and never
writes the value back, so a form opened long ago cannot undo takes made since.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from .actors import Actor
from .exceptions import CounterError
from .models import GLOBAL, INT64_MAX, INT64_MIN, Counter, CounterEvent, Source
from .pagination import EstimatingPaginator
from .parsing import parse_integer
from .services import (
    counter_configure,
    counter_create,
    counter_decrement,
    counter_delete,
    counter_increment,
    counter_reset,
    counter_set,
    counters_change,
)

OPERATIONS = {
    "set": (lambda name, n, actor: counter_set(name, n, actor=actor), "Set to"),
    "increment": (
        lambda name, n, actor: counter_increment(name, by=n, actor=actor),
        "Increase by",
    ),
    "decrement": (
        lambda name, n, actor: counter_decrement(name, by=n, actor=actor),
        "Decrease by",
    ),
    "reset": (lambda name, n, actor: counter_reset(name, actor=actor), "Reset to 0"),
}


def staff_actor(request) -> Actor:
    """Return the staff member behind an admin request."""
    return Actor(Source.ADMIN, f"user:{request.user.get_username()}")


class WholeNumberField(forms.IntegerField):
    """An integer typed as an optional sign and ASCII digits, nothing else."""

    def to_python(self, value):
        # IntegerField takes "5.0", " 5", "1_000" and other scripts' digits.
        if value in self.empty_values:
            return None
        try:
            return parse_integer(value)
        except ValueError:
            raise forms.ValidationError(
                self.error_messages["invalid"], code="invalid"
            ) from None


class ValueChangeForm(forms.Form):
    operation = forms.ChoiceField(
        choices=[(key, label) for key, (_, label) in OPERATIONS.items()],
        widget=forms.RadioSelect,
        initial="set",
    )
    number = WholeNumberField(
        required=False,
        min_value=INT64_MIN,
        max_value=INT64_MAX,
        help_text="The new value, or the step to add or subtract.",
    )

    def clean(self):
        data = super().clean()
        if data.get("operation") != "reset" and data.get("number") is None:
            self.add_error("number", "Enter a whole number.")
        return data


@admin.register(Counter)
class CounterAdmin(admin.ModelAdmin):
    list_display = ["name", "value", "public", "audit_takes", "updated_at"]
    list_filter = ["public"]
    search_fields = ["name"]
    actions = ["reset_selected", "change_value_selected"]
    change_form_template = "admin/counters/counter/change_form.html"

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "public", "audit_takes"]
        return ["name", "value", "public", "audit_takes", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["name", "value", "created_at", "updated_at"]

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.name == GLOBAL:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            counter_configure(
                obj.name,
                public=obj.public,
                audit_takes=obj.audit_takes,
                actor=staff_actor(request),
            )
            return
        created = counter_create(
            obj.name,
            public=obj.public,
            audit_takes=obj.audit_takes,
            actor=staff_actor(request),
        )
        # The admin goes on with ``obj`` (log entry, redirect): fill it in.
        for field in Counter._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))

    def delete_model(self, request, obj):
        counter_delete(obj.name, actor=staff_actor(request))

    def delete_queryset(self, request, queryset):
        actor = staff_actor(request)
        names = queryset.values_list("name", flat=True)
        counters_change(names, lambda name: counter_delete(name, actor=actor))

    # --- Refusals: a message, never a 500 ----------------------------------

    # A service refuses inside the admin's transaction (a counter another
    # staff member added or deleted a moment ago, #12): roll it all back,
    # the admin's own log entries included, and say why.

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except CounterError as exc:
            return self._refused(request, exc)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except CounterError as exc:
            return self._refused(request, exc)

    def response_action(self, request, queryset, *args, **kwargs):
        try:
            with transaction.atomic():
                return super().response_action(request, queryset, *args, **kwargs)
        except CounterError as exc:
            return self._refused(request, exc)

    def _refused(self, request, exc: CounterError):
        self.message_user(request, f"Nothing changed: {exc}", messages.ERROR)
        return redirect("admin:counters_counter_changelist")

    # --- Value changes, through the services ------------------------------

    def _apply(self, request, names, operation, number) -> bool:
        """Apply one operation to every named counter, or to none on error."""
        change, label = OPERATIONS[operation]
        actor = staff_actor(request)
        try:
            values = counters_change(names, lambda name: change(name, number, actor))
        except CounterError as exc:
            self.message_user(request, f"Nothing changed: {exc}", messages.ERROR)
            return False
        summary = ", ".join(f"{name} = {value}" for name, value in values.items())
        self.message_user(request, f"{label}: {summary}.", messages.SUCCESS)
        return True

    @admin.action(description="Reset selected counters to 0", permissions=["change"])
    def reset_selected(self, request, queryset):
        self._apply(request, queryset.values_list("name", flat=True), "reset", None)

    @admin.action(
        description="Change the value of selected counters…", permissions=["change"]
    )
    def change_value_selected(self, request, queryset):
        form = ValueChangeForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            data = form.cleaned_data
            names = queryset.values_list("name", flat=True)
            self._apply(request, names, data["operation"], data["number"])
            return None  # back to the list
        return self._value_page(request, queryset, form, bulk=True)

    def _value_page(self, request, queryset, form, *, bulk):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Change the value",
            "counters": list(queryset),
            "form": form,
            "bulk": bulk,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/counters/counter/change_value.html", context
        )

    def get_urls(self):
        value_view = self.admin_site.admin_view(self.change_value_view)
        return [
            path("<path:object_id>/value/", value_view, name="counters_counter_value"),
            *super().get_urls(),
        ]

    def change_value_view(self, request, object_id):
        """Change one counter's value through the services."""
        counter = self.get_object(request, unquote(object_id))
        if counter is None:
            raise Http404(f"There is no counter with the id {object_id!r}.")
        if not self.has_change_permission(request, counter):
            raise PermissionDenied
        form = ValueChangeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if self._apply(request, [counter.name], data["operation"], data["number"]):
                return redirect(
                    reverse("admin:counters_counter_change", args=[counter.pk])
                )
        queryset = Counter.objects.filter(pk=counter.pk)
        return self._value_page(request, queryset, form, bulk=False)


class CounterNameFilter(admin.SimpleListFilter):
    """Filter the trail by counter, offering the counters that exist now."""

    # Offering the trail's own names would be a SELECT DISTINCT over every
    # entry on every page (#12); the counters table is small. A deleted
    # counter's entries are still found by name (?counter_name=…).
    title = "counter"
    parameter_name = "counter_name"

    def lookups(self, request, model_admin):
        names = list(Counter.objects.values_list("name", flat=True))
        chosen = self.value()
        if chosen is not None and chosen not in names:
            names.append(chosen)
        return [(name, name) for name in names]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(counter_name=self.value())


@admin.register(CounterEvent)
class CounterEventAdmin(admin.ModelAdmin):
    """The audit trail: read-only, newest first, built for large tables."""

    list_display = [
        "created_at",
        "counter_name",
        "action",
        "old_value",
        "new_value",
        "source",
        "actor",
    ]
    list_filter = ["source", "action", CounterNameFilter]
    search_fields = ["=counter_name", "actor"]
    ordering = ["-id"]
    list_per_page = 100
    # The full count is a second COUNT(*) over the whole trail: skip it, and
    # count the filtered list only up to a bound (#23).
    show_full_result_count = False
    paginator = EstimatingPaginator
    # An index serves "when" both ways; sorting by another column would sort
    # a whole filtered set on every page (ties are broken by the id).
    sortable_by = ["created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
