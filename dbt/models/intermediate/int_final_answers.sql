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

last_tries as (

    -- a sample's last try: the highest step, then the highest attempt ((step, sample_index,
    -- attempt) is unique: raw.predictions' key). One aggregate per sample, not a window over
    -- every answer (12M answers: 10 s against 14 s).
    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        sample_index,
        arg_max(
            {'model_kind': model_kind, 'label_set': label_set, 'parse_status': parse_status,
             'predicted_label': predicted_label},
            {'step': step, 'attempt': attempt}
        ) as last_try

    from predictions

    group by model, model_version, dataset, protocol, image_id, sample_index

),

answered_labels as (

    -- each distinct answer once through the label map: a few dozen labels, where keying the
    -- join per answer trimmed and lower-cased every answer (~4 s at 10^7 answers)
    select distinct
        last_try.label_set as label_set,
        last_try.predicted_label as predicted_label

    from last_tries

),

label_emotions as (

    select
        answered_labels.label_set,
        answered_labels.predicted_label,
        emotion_label_map.emotion

    from answered_labels

    inner join emotion_label_map
        on emotion_label_map.label_set = answered_labels.label_set
        and {{ label_key('emotion_label_map.source_label') }} = {{ label_key('answered_labels.predicted_label') }}

),

samples as (

    select
        last_tries.model,
        last_tries.model_version,
        last_tries.last_try.model_kind as model_kind,
        last_tries.last_try.label_set as label_set,
        last_tries.dataset,
        last_tries.protocol,
        last_tries.image_id,
        last_tries.sample_index,
        last_tries.last_try.parse_status as parse_status,
        case
            when last_tries.last_try.parse_status in ('ok', 'repaired')
                then label_emotions.emotion
        end as sample_emotion

    from last_tries

    left join label_emotions
        on label_emotions.label_set = last_tries.last_try.label_set
        and label_emotions.predicted_label = last_tries.last_try.predicted_label

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

    -- Under 'status' a tied image gets no emotion, so which tied emotion ranks first does not
    -- matter and no hash is computed; under 'random' the hash decides it.
    select
        *,
        row_number() over (
            partition by model, model_version, dataset, protocol, image_id
            order by
                n_votes desc
                {%- if tie_policy == 'random' %},
                md5(concat_ws('/', '{{ tie_seed }}', model, model_version, dataset, protocol,
                              image_id, predicted_emotion)) asc
                {%- endif %}
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
