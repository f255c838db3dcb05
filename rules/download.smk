# Download (or generate) a corpus and write clean, aligned plain text for one language pair.
# Archives go to results/{corpus}/raw/ (shared by the corpus's pairs, kept, verified by checksum);
# the text of a pair is shared by all its variants. A local rule: clusters often reach the
# internet only from the login node.


rule download:
    input:
        get_local_files,
    output:
        train_src="results/{corpus}/{src}-{tgt}/text/train.{src}",
        train_tgt="results/{corpus}/{src}-{tgt}/text/train.{tgt}",
        valid_src="results/{corpus}/{src}-{tgt}/text/valid.{src}",
        valid_tgt="results/{corpus}/{src}-{tgt}/text/valid.{tgt}",
        test_src="results/{corpus}/{src}-{tgt}/text/test.{src}",
        test_tgt="results/{corpus}/{src}-{tgt}/text/test.{tgt}",
    log:
        "results/{corpus}/{src}-{tgt}/logs/download.log",
    benchmark:
        "results/{corpus}/{src}-{tgt}/benchmarks/download.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        source=get_source,
        options=get_download_options,
        raw_dir="results/{corpus}/raw",
        text_dir=lambda w, output: os.path.dirname(output.train_src),
    shell:
        "pasero-download --source {params.source} --pair {wildcards.src}-{wildcards.tgt}"
        " --raw-dir {params.raw_dir} -o {params.text_dir} {params.options} > {log} 2>&1"


# A further test set of the corpus (config: `test_sets`), e.g. IWSLT'17 tst2016: text/{testset}.{lang}.
rule download_test_set:
    input:
        get_test_set_inputs,
    output:
        src="results/{corpus}/{src}-{tgt}/text/{testset}.{src}",
        tgt="results/{corpus}/{src}-{tgt}/text/{testset}.{tgt}",
    log:
        "results/{corpus}/{src}-{tgt}/logs/download.{testset}.log",
    wildcard_constraints:
        testset=r"(?!(?:train|valid|test)\.)[A-Za-z0-9_]+",
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        source=get_source,
        options=get_download_options,
        raw_dir="results/{corpus}/raw",
        text_dir=lambda w, output: os.path.dirname(output.src),
    shell:
        "pasero-download --source {params.source} --pair {wildcards.src}-{wildcards.tgt}"
        " --raw-dir {params.raw_dir} -o {params.text_dir} --test-set {wildcards.testset} {params.options}"
        " > {log} 2>&1"
