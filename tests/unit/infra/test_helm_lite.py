"""The test-only chart renderer behaves like Helm on what the chart uses, and is strict where Helm is lax."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_lite import TemplateError, render_chart


def chart(tmp_path: Path, templates: dict[str, str], values: dict[str, Any]) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "c", "version": "1.0.0"})
    )
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    for name, text in templates.items():
        (tmp_path / "templates" / name).write_text(text)
    return tmp_path


def render(tmp_path: Path, text: str, values: dict[str, Any], **overrides: Any) -> str:
    return render_chart(chart(tmp_path, {"t.yaml": text}, values), overrides)["templates/t.yaml"]


def test_trim_markers_and_ranges_over_sorted_keys(tmp_path: Path) -> None:
    text = "a:\n{{- range $k, $v := .Values.m }}\n  {{ $k }}: {{ $v }}\n{{- end }}\nb: {{ .Release.Name }}\n"
    assert render(tmp_path, text, {"m": {"z": 1, "y": "two"}}) == "a:\n  y: two\n  z: 1\nb: switchboard\n"


def test_define_include_nindent_and_toyaml(tmp_path: Path) -> None:
    text = (
        '{{- define "x" -}}\nk: {{ .v }}\n{{- end -}}\n'
        'top:\n  {{- include "x" (dict "v" .Values.n) | nindent 2 }}\n'
        "  r:\n    {{- toYaml .Values.r | nindent 4 }}\n"
    )
    out = render(tmp_path, text, {"n": 3, "r": {"b": [1, 2], "a": "s"}})
    assert yaml.safe_load(out) == {"top": {"k": 3, "r": {"a": "s", "b": [1, 2]}}}


def test_if_else_chain_with_and_or(tmp_path: Path) -> None:
    text = '{{ if and .Values.a (not .Values.b) }}one{{ else if or .Values.b "" }}two{{ else }}three{{ end }}'
    assert render(tmp_path, text, {"a": True, "b": False}) == "one"
    assert render(tmp_path, text, {"a": False, "b": True}) == "two"
    assert render(tmp_path, text, {"a": False, "b": False}) == "three"


def test_a_missing_values_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="no entry for key 'nope'"):
        render(tmp_path, "{{ .Values.nope }}", {"a": 1})


def test_values_numbers_are_floats_as_in_helm(tmp_path: Path) -> None:
    # Helm decodes values through JSON: comparing a number with an int literal fails, printing a big one
    # gives exponent notation. The chart must use `int`.
    with pytest.raises(TemplateError, match="incompatible types"):
        render(tmp_path, "{{ if eq .Values.n 1 }}x{{ end }}", {"n": 1})
    assert render(tmp_path, "{{ if eq (int .Values.n) 1 }}x{{ end }}", {"n": 1}) == "x"
    assert render(tmp_path, "{{ .Values.n }}", {"n": 1000000}) == "1e+06"
    assert render(tmp_path, "{{ .Values.n }}", {"n": 8080}) == "8080"


def test_unbalanced_blocks_and_unknown_functions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="missing"):
        render(tmp_path, "{{ if .Values.a }}x", {"a": 1})
    with pytest.raises(TemplateError, match="not defined"):
        render(tmp_path, "{{ frobnicate .Values.a }}", {"a": 1})
    with pytest.raises(TemplateError, match="unclosed action"):
        render(tmp_path, "{{ .Values.a ", {"a": 1})


def test_fail_and_required_stop_the_rendering(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="give me a"):
        render(tmp_path, '{{ required "give me a" .Values.a }}', {"a": ""})
    with pytest.raises(TemplateError, match="nope"):
        render(tmp_path, '{{ fail "nope" }}', {})


def test_user_values_merge_over_defaults_and_null_deletes(tmp_path: Path) -> None:
    text = '{{ .Values.m.a }}-{{ .Values.m.b }}-{{ hasKey .Values.m "c" }}'
    assert render(tmp_path, text, {"m": {"a": 1, "b": 2, "c": 3}}, m={"b": 5, "c": None}) == "1-5-false"
