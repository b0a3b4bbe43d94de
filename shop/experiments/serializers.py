"""Response shapes of the results API (documented in the OpenAPI schema)."""

from __future__ import annotations

from rest_framework import serializers


class ExperimentArmSerializer(serializers.Serializer):
    key = serializers.CharField()
    weight = serializers.IntegerField()
    is_control = serializers.BooleanField()
    visitors = serializers.IntegerField(help_text="Visitors exposed to this arm (first armed event in the window).")


class ExperimentSummarySerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["draft", "running", "stopped"])
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    control = serializers.CharField(allow_null=True)
    arms = ExperimentArmSerializer(many=True)
    crossovers = serializers.IntegerField(help_text="Visitors seen under more than one arm; left out of every figure.")


class ExperimentSrmSerializer(serializers.Serializer):
    p_value = serializers.FloatField(help_text="Pearson chi-square of visitors per arm against the weights.")
    chi2 = serializers.FloatField()
    threshold = serializers.FloatField()
    mismatch = serializers.BooleanField(help_text="True when p_value < threshold: do not trust the results.")
    observed = serializers.DictField(child=serializers.IntegerField())
    expected = serializers.DictField(child=serializers.FloatField())
    verdict = serializers.CharField()


class ExperimentArmValueSerializer(serializers.Serializer):
    arm = serializers.CharField()
    value = serializers.FloatField()
    numerator = serializers.FloatField(help_text="Converters, revenue, visitors with a cart add, or rail clicks.")
    denominator = serializers.FloatField(help_text="Visitors, or rail impressions for the CTR.")
    visitors = serializers.IntegerField()


class ExperimentComparisonSerializer(serializers.Serializer):
    arm = serializers.CharField()
    control_value = serializers.FloatField()
    arm_value = serializers.FloatField()
    control_n = serializers.IntegerField(help_text="Control visitors.")
    arm_n = serializers.IntegerField(help_text="Arm visitors.")
    lift = serializers.FloatField(allow_null=True, help_text="Relative lift: arm / control - 1 (0.1 is +10%).")
    ci_low = serializers.FloatField(allow_null=True, help_text="95% CI of the lift (delta method), at one look.")
    ci_high = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True, help_text="Two-sided, fixed horizon.")
    seq_ci_low = serializers.FloatField(
        allow_null=True, help_text="Always-valid 95% interval (confidence sequence): safe to look every day."
    )
    seq_ci_high = serializers.FloatField(allow_null=True)
    significant = serializers.BooleanField()
    sequentially_significant = serializers.BooleanField()
    visitors_per_arm_needed = serializers.IntegerField(
        allow_null=True,
        help_text="Fixed-horizon visitors per arm for the lift test reported here to detect the observed lift "
        "(alpha 0.05, power 0.8).",
    )
    more_visitors_per_arm = serializers.IntegerField(allow_null=True)
    control_nonzero = serializers.IntegerField(
        allow_null=True, help_text="Control visitors with a non-zero value (converted, bought, added, clicked)."
    )
    arm_nonzero = serializers.IntegerField(allow_null=True)
    min_visitors = serializers.IntegerField(help_text="Visitors each arm needs before a verdict.")
    min_nonzero = serializers.IntegerField(help_text="Visitors with a non-zero value each arm needs before a verdict.")
    enough_data = serializers.BooleanField(
        help_text="Both arms reached the minimum sample; below it the verdict says so."
    )
    conclusive = serializers.BooleanField(help_text="Significant at one look on enough data.")
    more_visitors_for_minimum = serializers.IntegerField(
        help_text="About this many more visitors per arm until the minimum sample, at the rates seen so far."
    )
    verdict = serializers.CharField()


class ExperimentMetricCapSerializer(serializers.Serializer):
    percentile = serializers.FloatField(help_text="Of the non-zero values (visitors with an order), all arms together.")
    value = serializers.FloatField(help_text="Each visitor's value counts up to this.")
    visitors_capped = serializers.IntegerField(help_text="Visitors whose value was above the cap.")
    largest = serializers.FloatField(help_text="The largest value before capping.")
    uncapped = serializers.DictField(child=serializers.FloatField(), help_text="Per arm, the mean without the cap.")


class ExperimentMetricSerializer(serializers.Serializer):
    metric = serializers.CharField()
    label = serializers.CharField()
    kind = serializers.ChoiceField(choices=["proportion", "mean", "ratio"])
    primary = serializers.BooleanField()
    cap = ExperimentMetricCapSerializer(
        allow_null=True,
        help_text="Revenue per visitor is winsorized (EXPERIMENTS_REVENUE_CAP_PERCENTILE); null: not capped.",
    )
    note = serializers.CharField(allow_blank=True, help_text="How to read the metric, or how it was capped, in words.")
    arms = ExperimentArmValueSerializer(many=True)
    comparisons = ExperimentComparisonSerializer(many=True)


class ExperimentDaySerializer(serializers.Serializer):
    date = serializers.DateField(help_text="Day of the visitors' first exposure (UTC).")
    arm = serializers.CharField()
    visitors = serializers.IntegerField()
    conversion = serializers.FloatField()
    revenue_per_visitor = serializers.FloatField()
    cumulative_visitors = serializers.IntegerField()
    cumulative_conversion = serializers.FloatField()
    cumulative_lift = serializers.FloatField(allow_null=True, help_text="Conversion lift against control so far.")
    cumulative_ci_low = serializers.FloatField(allow_null=True)
    cumulative_ci_high = serializers.FloatField(allow_null=True)
    cumulative_seq_ci_low = serializers.FloatField(allow_null=True)
    cumulative_seq_ci_high = serializers.FloatField(allow_null=True)


class ExperimentModelVersionSerializer(serializers.Serializer):
    model_version = serializers.CharField(help_text='Newest model version that served the visitor ("" for none).')
    arm = serializers.CharField()
    visitors = serializers.IntegerField()
    conversion = serializers.FloatField()
    revenue_per_visitor = serializers.FloatField()
    add_to_cart = serializers.FloatField()
    rail_ctr = serializers.FloatField()


class ExperimentArmServingSerializer(serializers.Serializer):
    arm = serializers.CharField()
    requests = serializers.IntegerField(help_text="Personalised rail renders and API answers for this arm's visitors.")
    intended = serializers.ChoiceField(choices=["live/batch", "popularity"], help_text="What the arm means to serve.")
    by_source = serializers.DictField(child=serializers.IntegerField(), help_text="live, batch, popularity, fallback.")
    fallback_reasons = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Why requests fell back to the popular list (no_activity: no history).",
    )
    own = serializers.IntegerField(help_text="Requests the arm's own ranking answered.")
    own_share = serializers.FloatField(allow_null=True)
    no_history = serializers.IntegerField(help_text="Popular list because the visitor had no history (not a fault).")
    faults = serializers.IntegerField(help_text="Popular list because the arm's ranking failed (budget, busy, ...).")
    fault_share = serializers.FloatField(allow_null=True)
    note = serializers.CharField(allow_blank=True)


class ExperimentServingMixSerializer(serializers.Serializer):
    arms = ExperimentArmServingSerializer(many=True)
    warnings = serializers.ListField(
        child=serializers.CharField(), help_text="Arms that mostly served something other than their ranking."
    )


class ExperimentResultsSerializer(serializers.Serializer):
    experiment = ExperimentSummarySerializer()
    srm = ExperimentSrmSerializer()
    metrics = ExperimentMetricSerializer(many=True)
    verdict = serializers.CharField(
        help_text="Plain words on the primary metric (conversion), and on any arm that mostly fell back."
    )
    serving_mix = ExperimentServingMixSerializer(
        allow_null=True, help_text="What each arm served in the experiment's window (from the serving counters)."
    )
    by_day = ExperimentDaySerializer(many=True)
    by_model_version = ExperimentModelVersionSerializer(many=True)
    generated_at = serializers.DateTimeField()


class ArmCompositionSerializer(serializers.Serializer):
    arm = serializers.CharField()
    cards = serializers.IntegerField(help_text="Cards shown on the personalised rails (home, product page, cart).")
    products = serializers.IntegerField(help_text="Distinct products among them.")
    own_cards = serializers.IntegerField(
        help_text="Cards of a product the visitor had viewed, clicked or carted before."
    )
    own_clicks = serializers.IntegerField()
    other_cards = serializers.IntegerField()
    other_clicks = serializers.IntegerField()
    other_from_control = serializers.IntegerField(
        help_text="Other cards among the control's most-shown products (0 for the control itself)."
    )
    own_share = serializers.FloatField(allow_null=True)
    own_ctr = serializers.FloatField(allow_null=True)
    other_ctr = serializers.FloatField(allow_null=True)
    other_control_share = serializers.FloatField(allow_null=True)


class ExperimentCompositionSerializer(serializers.Serializer):
    experiment = serializers.CharField(help_text="The experiment's key.")
    control = serializers.CharField(allow_null=True)
    control_top = serializers.IntegerField(help_text="How many of the control's most-shown products count.")
    computed_at = serializers.DateTimeField(help_text="When these figures were read (cached for a minute).")
    arms = ArmCompositionSerializer(many=True)
