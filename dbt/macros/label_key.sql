{#- The one label-matching rule of the warehouse: a label (emotion, race, gender) matches a seed
    row when both are equal after removing ASCII whitespace and no-break spaces at both ends and
    lower-casing. Python applies the same rule (inference.datasets.labels.label_key); the two are
    checked against each other in tests/test_label_key.py. -#}
{% macro label_key(expr) -%}
lower(trim({{ expr }}, chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(160)))
{%- endmacro %}
