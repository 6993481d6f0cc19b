{#- One final emotion answer per (model, model_version, dataset, protocol, image_id).
    Per sample the last try counts (highest step among the protocol's 'emotion' steps, then
    highest attempt); across maj@k samples the mode of the valid canonical emotions wins.
    A tie for the mode follows var('tie_policy') (statistics.tie_policy): 'status' (default)
    gives answer_status 'tie' and no predicted emotion (not an answer; an error in
    intent-to-treat accuracy); 'random' keeps the tied emotion with the smallest
    md5(tie_seed/slice/image/emotion), a reproducible random choice. is_tie flags both. -#}

{%- set tie_policy = var('tie_policy', 'status') -%}
{%- if tie_policy not in ('status', 'random') -%}
    {{ exceptions.raise_compiler_error("var('tie_policy') must be 'status' or 'random', got '" ~ tie_policy ~ "'") }}
{%- endif -%}
{%- set tie_seed = var('tie_seed', 0) | int %}

with

predictions as (

    select * from {{ ref('int_predictions') }}
    where step_name = 'emotion'
    {{ slice_filter('and') }}

),

emotion_label_map as (

    select * from {{ ref('emotion_label_map') }}

),

last_attempts as (

    select *
    from predictions
    qualify row_number() over (
        partition by model, model_version, dataset, protocol, image_id, sample_index
        order by step desc, attempt desc
    ) = 1

),

samples as (

    select
        last_attempts.model,
        last_attempts.model_version,
        last_attempts.model_kind,
        last_attempts.label_set,
        last_attempts.dataset,
        last_attempts.protocol,
        last_attempts.image_id,
        last_attempts.sample_index,
        last_attempts.parse_status,
        case
            when last_attempts.parse_status in ('ok', 'repaired')
                then emotion_label_map.emotion
        end as sample_emotion

    from last_attempts

    left join emotion_label_map
        on emotion_label_map.label_set = last_attempts.label_set
        and {{ label_key('emotion_label_map.source_label') }} = {{ label_key('last_attempts.predicted_label') }}

),

per_image as (

    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        arg_max(model_kind, sample_index) as model_kind,
        arg_max(label_set, sample_index) as label_set,
        arg_max(parse_status, sample_index) as last_parse_status,
        count(*) as n_samples,
        count(sample_emotion) as n_valid

    from samples

    group by model, model_version, dataset, protocol, image_id

),

votes as (

    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        sample_emotion as predicted_emotion,
        count(*) as n_votes

    from samples

    where sample_emotion is not null

    group by model, model_version, dataset, protocol, image_id, sample_emotion

),

ranked_votes as (

    select
        *,
        row_number() over (
            partition by model, model_version, dataset, protocol, image_id
            order by
                n_votes desc,
                md5(concat_ws('/', '{{ tie_seed }}', model, model_version, dataset, protocol,
                              image_id, predicted_emotion)) asc
        ) as vote_rank,
        count(*) over (
            partition by model, model_version, dataset, protocol, image_id, n_votes
        ) as n_labels_with_these_votes

    from votes

),

winners as (

    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        predicted_emotion,
        n_votes,
        n_labels_with_these_votes > 1 as is_tie

    from ranked_votes

    where vote_rank = 1

),

final as (

    select
        per_image.model,
        per_image.model_version,
        per_image.model_kind,
        per_image.label_set,
        per_image.dataset,
        per_image.protocol,
        per_image.image_id,
        {%- if tie_policy == 'status' %}
        case when not winners.is_tie then winners.predicted_emotion end as predicted_emotion,
        {%- else %}
        winners.predicted_emotion,
        {%- endif %}
        coalesce(winners.n_votes, 0) as n_votes,
        coalesce(winners.is_tie, false) as is_tie,
        per_image.n_samples,
        per_image.n_valid,
        case
            {%- if tie_policy == 'status' %}
            when winners.is_tie then 'tie'
            {%- endif %}
            when winners.predicted_emotion is not null then 'answered'
            when per_image.last_parse_status in ('ok', 'repaired') then 'unmapped_label'
            else per_image.last_parse_status
        end as answer_status

    from per_image

    left join winners
        on winners.model = per_image.model
        and winners.model_version = per_image.model_version
        and winners.dataset = per_image.dataset
        and winners.protocol = per_image.protocol
        and winners.image_id = per_image.image_id

)

select * from final
