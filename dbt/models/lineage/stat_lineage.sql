{#- From any statistics row to the evidence behind it: one row per (stats row, image, raw
    answer). A stats row of a slice (model, model_version, dataset, protocol) is traced to the
    images of its scope -- its group (subset_kind a configured grouping, or the pair
    group_a / group_b of a two-group test), its emotion (subset_kind 'emotion', or a
    true_emotion column other than 'all') or the whole slice (any other subset_kind: 'all',
    a mixed-model term) -- then to every raw answer of the model about each image (all steps,
    samples and tries, raw_text included). stat_row_id identifies a stats row (md5 of the
    whole row as text), so `where stats_table = ... and p_value < 0.05` leads to raw_text.
    Not traced (no model answers behind them): human-only rows (model 'human'), rows without a
    model (strength inversion) and McNemar's version pairs (subset_kind 'model_pair').
    Every slice statistics table of the stats source is read when it exists. -#}

-- depends_on: {{ source('stats', 'categorical_agreement') }}
-- depends_on: {{ source('stats', 'dimensional_agreement') }}
-- depends_on: {{ source('stats', 'mixed_models') }}
-- depends_on: {{ source('stats', 'error_rate_ztests') }}
-- depends_on: {{ source('stats', 'misclassification_tests') }}
-- depends_on: {{ source('stats', 'worst_subgroups') }}
-- depends_on: {{ source('stats', 'wilcoxon_tests') }}
-- depends_on: {{ source('stats', 'rater_reliability') }}
-- depends_on: {{ source('stats', 'response_style') }}

{%- set tables = ['categorical_agreement', 'dimensional_agreement', 'mixed_models', 'error_rate_ztests',
                  'misclassification_tests', 'worst_subgroups', 'wilcoxon_tests', 'rater_reliability',
                  'response_style'] %}

with

stat_scopes as (

    {{ lineage_scopes(tables) }}

),

answers as (

    select * from {{ ref('int_answers_with_groups') }}

),

images as (

    select * from {{ ref('int_images_labeled') }}

),

predictions as (

    select * from {{ ref('int_predictions') }}

),

scoped_images as (

    select
        stat_scopes.*,
        answers.image_id,
        answers.group_value,
        answers.true_emotion,
        answers.predicted_emotion as final_emotion,
        answers.answer_status as final_answer_status,
        answers.is_correct as final_is_correct

    from stat_scopes

    inner join answers
        on answers.model = stat_scopes.model
        and answers.model_version = stat_scopes.model_version
        and answers.dataset = stat_scopes.dataset
        and answers.protocol = stat_scopes.protocol
        and answers.grouping = stat_scopes.grouping
        and (stat_scopes.group_values is null or list_contains(stat_scopes.group_values, answers.group_value))
        and (stat_scopes.scope_emotion is null or answers.true_emotion = stat_scopes.scope_emotion)

),

final as (

    select
        scoped_images.*,
        images.image_hash,
        images.identity,
        images.race,
        images.gender,
        predictions.run_id,
        predictions.step,
        predictions.step_name,
        predictions.sample_index,
        predictions.attempt,
        predictions.parse_status,
        predictions.predicted_label,
        predictions.predicted_value,
        predictions.prompt_hash,
        predictions.raw_text,
        predictions.created_at as answered_at

    from scoped_images

    inner join images
        on images.dataset = scoped_images.dataset
        and images.image_id = scoped_images.image_id

    inner join predictions
        on predictions.model = scoped_images.model
        and predictions.model_version = scoped_images.model_version
        and predictions.dataset = scoped_images.dataset
        and predictions.protocol = scoped_images.protocol
        and predictions.image_id = scoped_images.image_id

)

select * from final
