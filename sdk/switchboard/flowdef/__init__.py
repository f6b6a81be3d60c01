"""The IVR flow file format and its offline validator, shared by the CLI (`switchboard flows validate`) and
the platform (the API validates every deploy, the IVR service runs the models): msgspec and PyYAML only, so
the light `switchboard` install carries it without the platform."""

from .flow import Flow, flow_schema
from .source import Issue
from .validate import Report, validate_text

__all__ = ["Flow", "Issue", "Report", "flow_schema", "validate_text"]
