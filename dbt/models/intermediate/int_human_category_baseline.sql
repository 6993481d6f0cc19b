{#- How people read each image, where the dataset ships it, one row per (dataset, image_id,
    measure, human_sample, perceived_emotion). Two kinds, each with its own meaning:
    - share_choosing_intended (0..1): the share of the stimulus set's validation raters who chose
      the image's intended expression (extra.human_agreement, datasets.<name>.human_agreement;
      e.g. RADIATE's validation data); perceived_emotion 'intended' (whichever the true emotion
      is). Averaged over images it is the expected accuracy of one rater drawn at random:
      comparable to a model's accuracy on the same images.
    - mean_perceived_rating (1..7 Likert): the norming sample's mean rating of how much the face
      looks afraid / angry / disgusted / happy / sad / surprised (the Chicago Face Database's
      norming workbook, extra.norming.<sheet>, one sheet per sample). CFD normed the targets'
      neutral photos, so only images whose true emotion is neutral carry it. Not an accuracy: it
      stands beside the share of a model's answers that read those faces as that emotion. -#}

with

images as (

    select
        stg_dataset_images.dataset,
        stg_dataset_images.image_id,
        labeled.true_emotion,
        stg_dataset_images.extra

    from {{ ref('stg_dataset_images') }} as stg_dataset_images

    inner join {{ ref('int_images_labeled') }} as labeled
        on labeled.dataset = stg_dataset_images.dataset
        and labeled.image_id = stg_dataset_images.image_id

    where stg_dataset_images.extra is not null

),

-- CFD norming columns (the workbook's names) -> canonical emotions
norming_columns as (

    select * from (values
        ('Afraid', 'fear'), ('Angry', 'anger'), ('Disgusted', 'disgust'),
        ('Happy', 'happy'), ('Sad', 'sad'), ('Surprised', 'surprise')
    ) as t (column_name, emotion)

),

agreement as (

    select
        dataset,
        image_id,
        'share_choosing_intended' as measure,
        'validation raters' as human_sample,
        'intended' as perceived_emotion,
        cast(json_extract(extra::json, '$.human_agreement.share_intended') as double) as human_value,
        cast(json_extract(extra::json, '$.human_agreement.n_raters') as double) as n_raters

    from images

    where json_extract(extra::json, '$.human_agreement.share_intended') is not null

),

norming_sheets as (

    select
        dataset,
        image_id,
        extra::json -> 'norming' as norming,
        unnest(json_keys(extra::json, '$.norming')) as sheet

    from images

    where true_emotion = 'neutral'
        and json_type(extra::json, '$.norming') = 'OBJECT'

),

norming as (

    select
        norming_sheets.dataset,
        norming_sheets.image_id,
        'mean_perceived_rating' as measure,
        norming_sheets.sheet as human_sample,
        norming_columns.emotion as perceived_emotion,
        try_cast(json_extract_string(json_extract(norming_sheets.norming, norming_sheets.sheet),
                                     norming_columns.column_name) as double) as human_value,
        null::double as n_raters

    from norming_sheets

    cross join norming_columns

),

final as (

    select * from agreement
    union all
    select * from norming where human_value is not null

)

select * from final
