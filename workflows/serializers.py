"""REST input and output shapes for workflows and their versions."""

from rest_framework import serializers

from config.rest import StrictSerializer
from workflows.models import Workflow, WorkflowVersion


class DefinitionField(serializers.JSONField):
    """A workflow definition: a JSON object, validated in full by the service that saves it."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be a JSON object with name and steps")
        return super().to_internal_value(data)


class WorkflowCreateInput(StrictSerializer):
    slug = serializers.SlugField(max_length=100)
    definition = DefinitionField()


class WorkflowUpdateInput(StrictSerializer):
    definition = DefinitionField()


class WorkflowOutput(serializers.ModelSerializer):
    version = serializers.IntegerField(source="current_version.number", read_only=True, allow_null=True)
    definition = serializers.JSONField(source="current_version.definition", read_only=True, allow_null=True)

    class Meta:
        model = Workflow
        fields = ["slug", "name", "description", "active", "version", "definition", "created_at", "updated_at"]


class VersionOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = WorkflowVersion
        fields = ["number", "content_hash", "created_at", "created_by", "definition"]
