{#- Tae et al. Table 6: per-emotion arousal bias and "LMM p", beside the warehouse's cells.

    * bland_altman_bias: mean(model - human mean) over the emotion's images
      (stats.dimensional_agreement) -- the same quantity as the paper's "Bias", compared within
      rounding.
    * lmm_p_value: the paper printed treatment coefficients of `rating ~ rater_type * emotion +
      (1 | image_id)` (lme4/lmerTest, human aggregate ratings, Satterthwaite t): for anger, the
      reference level, the rater main effect (the model-minus-human effect at anger); for every
      other emotion the rater x emotion interaction, i.e. THAT emotion's effect minus anger's
      (Gemma3 happy: bias +0.30 beside beta +0.059 = 0.30 - 0.24). The warehouse's cell (`value`)
      is the p of the simple effect "model minus human at this emotion" (an emmeans contrast of
      the fit, stats.mixed_models analysis 'mixed_model_simple_effect'): a different quantity
      except at the reference level, so within_rounding and difference stay null and
      `comparison` says why. Our fit's coefficient of the term the paper printed stands beside it
      (treatment_term, treatment_estimate, treatment_p_value, treatment_p_within_rounding): the
      same coefficient, fitted on every human rating with Wald z.
    Subset kinds are those of the seed subset_kinds (the statistics write 'emotion' for their
    by-factor true_emotion). -#}

with

{{ tae_bias_cells('arousal') }},

mixed_models as (

    select * from {{ stats_relation('mixed_models', result_columns({'dimension': 'varchar', 'rater_type': 'varchar'})) }}
    where measure = 'emotion' and dimension = 'arousal'

),

simple_effects as (

    select * from mixed_models
    where analysis = 'mixed_model_simple_effect' and subset_kind = 'emotion'

),

treatment_terms as (

    select model, model_version, dataset, protocol, subset as term, estimate, p_value
    from mixed_models
    where analysis = 'mixed_model' and subset_kind = 'term'

),

lmm_cells as (

    select
        effect.model,
        effect.model_version,
        effect.dataset,
        effect.protocol,
        effect.dimension,
        effect.subset_kind,
        effect.subset,
        'lmm_p_value' as measure,
        effect.n,
        effect.p_value as value,
        -- the simple effect itself (model minus human, rating points) and its interval
        effect.estimate as effect_estimate,
        effect.ci_low as effect_ci_low,
        effect.ci_high as effect_ci_high,
        effect.statistic,
        effect.p_value,
        effect.p_adjusted,
        effect.correction,
        effect.family,
        effect.below_min_n,
        effect.detail,
        -- the coefficient the paper printed: the interaction, or the main effect at the reference
        coalesce(interaction.term, main.term) as treatment_term,
        coalesce(interaction.estimate, main.estimate) as treatment_estimate,
        coalesce(interaction.p_value, main.p_value) as treatment_p_value

    from simple_effects as effect

    left join treatment_terms as interaction
        on interaction.model = effect.model
        and interaction.model_version = effect.model_version
        and interaction.dataset = effect.dataset
        and interaction.protocol = effect.protocol
        and interaction.term = 'C(rater_type, Treatment(''human''))[T.' || effect.rater_type || ']:C(true_emotion)[T.'
            || effect.subset || ']'

    -- no interaction term: the emotion is the reference level, whose effect is the main effect
    left join treatment_terms as main
        on interaction.term is null
        and main.model = effect.model
        and main.model_version = effect.model_version
        and main.dataset = effect.dataset
        and main.protocol = effect.protocol
        and main.term = 'C(rater_type, Treatment(''human''))[T.' || effect.rater_type || ']'

),

all_cells as (

    select * from cells
    union all by name
    select * from lmm_cells

),

{{ compare_with_published('tae_table6', 'all_cells',
       {'dimension': 'dimension', 'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select
        * exclude (difference, within_rounding),
        measure = 'bland_altman_bias' as same_quantity,
        case when measure = 'bland_altman_bias' then difference end as difference,
        case when measure = 'bland_altman_bias' then within_rounding end as within_rounding,
        case
            when treatment_p_value is null or published_value is null then null
            when published_relation = '<' then treatment_p_value < published_value
            else abs(treatment_p_value - published_value) <= rounding_unit / 2 + 1e-9
        end as treatment_p_within_rounding,
        case
            when measure = 'bland_altman_bias'
                then 'same quantity: mean(model - human mean) over the emotion''s images'
            else 'different quantities: the paper''s p is a treatment coefficient''s (anger, the reference: the '
                || 'model-minus-human effect at anger; other emotions: the interaction = this emotion''s effect '
                || 'minus anger''s; lmerTest on human aggregate ratings); value is the p of the simple effect '
                || 'model minus human at this emotion (emmeans-style contrast, Wald z, every human rating). '
                || 'treatment_p_value is our fit''s p of the coefficient the paper printed'
        end as comparison

    from compared

)

select * from final
