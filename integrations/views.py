"""The API's human page: the OpenAPI document (`/api/v1/openapi.json`) rendered as HTML
on the server, with no script and nothing from a CDN."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chat import csp

from .api import api


def _ref(schema: dict, components: dict) -> dict:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _type(schema: dict, components: dict) -> str:
    """A short name for a JSON schema: integer, string, Conversation, list of Message..."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s, components) for s in schema["anyOf"])
    if "const" in schema:
        return repr(schema["const"]).replace("'", '"')
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), components)}"
    if schema.get("type") == "object" and "additionalProperties" in schema:
        return f"object of {_type(schema['additionalProperties'], components)}"
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    return f"{kind} ({schema['format']})" if "format" in schema else kind


def _fields(schema: dict, components: dict) -> list[dict]:
    schema = _ref(schema, components)
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "type": _type(field, components),
            "required": name in required,
            "description": field.get("description", ""),
        }
        for name, field in schema.get("properties", {}).items()
    ]


def operations(document: dict) -> tuple[list[dict], list[dict]]:
    """The document's operations and its schemas, as the page lists them."""
    components = document.get("components", {}).get("schemas", {})
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            responses = []
            for status, answer in sorted(operation.get("responses", {}).items()):
                content = answer.get("content", {}).get("application/json", {})
                responses.append(
                    {
                        "status": status,
                        "type": _type(content["schema"], components) if content else "",
                    }
                )
            found.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "type": _type(p.get("schema", {}), components),
                            "required": p.get("required", False),
                            "description": p.get("description", ""),
                        }
                        for p in operation.get("parameters", ())
                    ],
                    "body": _fields(body["schema"], components) if body else [],
                    "responses": responses,
                }
            )
    schemas = [
        {"name": name, "fields": _fields(schema, components)}
        for name, schema in sorted(components.items())
    ]
    return found, schemas


@require_GET
def api_docs(request: HttpRequest) -> HttpResponse:
    document = api.get_openapi_schema(path_prefix="/api/v1/")
    found, schemas = operations(document)
    response = render(
        request,
        "integrations/api_docs.html",
        {"operations": found, "schemas": schemas, "openapi_url": "/api/v1/openapi.json"},
    )
    return csp.with_csp(response, csp.policy())
