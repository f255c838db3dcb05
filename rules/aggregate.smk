# Results tables of every experiment and the plots shown by `snakemake --report`. The report's
# results page and validation plot exist for two scopes: `all` (every experiment of the config, the
# default target) and `scored` (those scored so far: `snakemake --report report.html
# --report-after-run scored` reports a partial run).


rule aggregate:
    input:
        [f"results/{corpus}/{name}/scores.json" for corpus, name in experiments()],
    output:
        tsv="results/summary.tsv",
        md="results/summary.md",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "pasero-aggregate {input} -o {output.tsv} --markdown {output.md} > {log} 2>&1"


rule learning_curve:
    input:
        rules.train.output[0],
    output:
        report(
            "results/{corpus}/{exp}/learning_curve.svg",
            caption="../workflow/report/learning_curve.rst",
            category="Learning curves",
            subcategory="{corpus}",
            labels={"experiment": "{corpus}/{exp}"},
        ),
    log:
        "results/{corpus}/{exp}/logs/learning_curve.log",
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        metrics="results/{corpus}/{exp}/train/train.jsonl",
        title="{corpus}/{exp}",
        settings=get_settings_caption,
    script:
        "../workflow/report/learning_curve.py"


rule directions_chart:
    input:
        rules.combine_directions.output.json,
    output:
        report(
            "results/{corpus}/{exp}/directions.svg",
            caption="../workflow/report/directions_chart.rst",
            category="Multilingual",
            subcategory="{corpus}",
            labels={"experiment": "{corpus}/{exp}"},
        ),
    log:
        "results/{corpus}/{exp}/logs/directions_chart.log",
    wildcard_constraints:
        exp=MULTILINGUAL_EXP,
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        title="{corpus}/{exp}",
    script:
        "../workflow/report/directions_chart.py"


rule results_page:
    input:
        get_report_scores,
    output:
        report(
            "results/report/{scope}/summary.html",
            caption="../workflow/report/summary_html.rst",
            category="Results",
            labels={"page": "results ({scope})"},
        ),
    log:
        "results/report/{scope}/logs/results_page.log",
    wildcard_constraints:
        scope="all|scored",
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "pasero-aggregate {input} -o results/report/{wildcards.scope}/summary.tsv --html {output} > {log} 2>&1"


rule validation_curves:
    input:
        get_report_trainings,
    output:
        report(
            "results/report/{scope}/validation.svg",
            caption="../workflow/report/validation_curves.rst",
            category="Results",
            labels={"page": "validation curves ({scope})"},
        ),
    log:
        "results/report/{scope}/logs/validation_curves.log",
    wildcard_constraints:
        scope="all|scored",
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        names=get_report_names,
        metrics=get_report_metrics,
    script:
        "../workflow/report/validation_curves.py"


rule scored:
    """The report of what has run so far: the results page, validation plot and learning curves of
    the experiments scored (their scores.json exists when the workflow starts)."""
    input:
        "results/report/scored/summary.html",
        "results/report/scored/validation.svg",
        get_scored_plots,
