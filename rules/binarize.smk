# Tokenize and binarize one split of one language (fairseq's mmap format) for training.


rule binarize:
    input:
        text=get_binarize_text,
        dict=rules.dict.output[0],
        tokenizer=rules.tokenizer.output.model,
    output:
        multiext("results/{corpus}/{exp}/bin/{split}.{langpair}.{lang}", ".bin", ".idx"),
    log:
        "results/{corpus}/{exp}/logs/binarize.{split}.{langpair}.{lang}.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/binarize.{split}.{langpair}.{lang}.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    threads: 4
    params:
        prefix=lambda w, output: output[0].removesuffix(".bin"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
    shell:
        "pasero-binarize --dict {input.dict} --tokenizer {params.tokenizer} -i {input.text} -o {params.prefix}"
        " --workers {threads} > {log} 2>&1"
