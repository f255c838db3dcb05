# Tokenize and binarize one split of one language (fairseq's mmap format) for training.


rule binarize:
    input:
        text=lambda w: f"{text_dir(exp(w))}/{w.split}.{w.lang}",
        dict="results/{corpus}/{exp}/dict.txt",
        tokenizer="results/{corpus}/{exp}/tokenizer/spm.model",
    output:
        multiext("results/{corpus}/{exp}/bin/{split}.{langpair}.{lang}", ".bin", ".idx"),
    params:
        prefix=lambda w, output: output[0].removesuffix(".bin"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
    log:
        "results/{corpus}/{exp}/logs/binarize.{split}.{langpair}.{lang}.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/binarize.{split}.{langpair}.{lang}.tsv"
    threads: 4
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "pasero-binarize --dict {input.dict} --tokenizer {params.tokenizer} -i {input.text} -o {params.prefix}"
        " --workers {threads} > {log} 2>&1"
