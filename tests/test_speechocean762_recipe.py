"""The speechocean762 recipe's scripts: dev speakers, the ESPnet-style results table, the
missing-corpus message, and the whole recipe on a few dozen real utterances (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multimodal_s2s.config import config_to_dict, load_config
from multimodal_s2s.data.manifest import write_manifest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "speechocean762_asr"
CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RECIPE / script), *args], capture_output=True, text=True
    )


def _records(speakers: dict[str, int], per_speaker: int) -> list[dict]:
    return [
        {"audio": f"/a/{s}-{i}.ogg", "text": "x", "speaker": s, "age": age}
        for s, age in speakers.items()
        for i in range(per_speaker)
    ]


def test_split_dev_holds_out_whole_speakers_of_both_age_groups(tmp_path):
    speakers = {f"c{i}": 6 + i for i in range(5)} | {f"a{i}": 20 + i for i in range(5)}
    write_manifest(_records(speakers, 3), tmp_path / "all.jsonl")
    result = _run(
        "split_dev.py",
        *(str(tmp_path / n) for n in ("all.jsonl", "train.jsonl", "dev.jsonl")),
        "--children",
        "2",
        "--adults",
        "1",
    )
    assert result.returncode == 0, result.stderr
    train, dev = ([json.loads(x) for x in open(tmp_path / n)] for n in ("train.jsonl", "dev.jsonl"))
    dev_speakers = {r["speaker"] for r in dev}
    assert len(dev) == 9 and len(train) == 21
    assert dev_speakers.isdisjoint(r["speaker"] for r in train)
    assert sorted(s[0] for s in dev_speakers) == ["a", "c", "c"]


def test_split_dev_refuses_more_speakers_than_there_are(tmp_path):
    write_manifest(_records({"c0": 7, "a0": 30}, 2), tmp_path / "all.jsonl")
    result = _run("split_dev.py", str(tmp_path / "all.jsonl"), "t.jsonl", "d.jsonl")
    assert result.returncode == 2
    assert result.stderr == (
        "error: asked for 6 children and 6 adults as dev speakers, the manifest has 1 and 1\n"
    )


def test_the_fine_tuning_config_builds_the_model_it_is_pretrained_as():
    pretrain = config_to_dict(load_config(RECIPE.parent / "phone_menu_asr" / "config.yaml"))
    finetune = config_to_dict(load_config(RECIPE / "config.yaml"))
    for section in ("encoder", "decoder", "generator", "tokenizer"):
        assert finetune[section] == pretrain[section], section
    assert finetune["data"]["features"] == pretrain["data"]["features"]


def _alignment(key: str, hits: int, sub: int, dele: int, ins: int) -> dict:
    return {"key": key, "hits": hits, "substitutions": sub, "deletions": dele, "insertions": ins}


def test_results_table_counts_as_espnet_and_splits_the_test_wer_by_age(tmp_path):
    report = tmp_path / "eval_beam8"
    report.mkdir()
    rows = [_alignment("/c.ogg", 3, 1, 0, 1), _alignment("/a.ogg", 4, 0, 0, 0)]
    (report / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (report / "fsdd.jsonl").write_text(json.dumps(_alignment("/f.wav", 0, 0, 1, 0)) + "\n")
    ages = tmp_path / "test.jsonl"
    write_manifest(
        [{"audio": "/c.ogg", "text": "", "age": 7}, {"audio": "/a.ogg", "text": "", "age": 30}],
        ages,
    )
    out = tmp_path / "results.md"
    result = _run(
        "write_results.py",
        "--out",
        str(out),
        "--report",
        f"beam8={report}",
        "--ages",
        str(ages),
        "--seconds",
        "train=120",
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    # test: 8 reference words, 7 hits, 1 substitution, 1 insertion; 1 of 2 sentences wrong
    assert "|decode_beam8/test|2|8|87.5|12.5|0.0|12.5|25.0|50.0|" in text
    assert "|decode_beam8/fsdd|1|1|0.0|0.0|100.0|0.0|100.0|100.0|" in text
    assert "|beam8|50.0|0.0|" in text  # children: 2 errors of 4 words; adults: none
    assert "Total 2.0 min (train 2.0 min)" in text


@pytest.mark.parametrize("missing", ["SPEECHOCEAN762_DIR", "FSDD_DIR"])
def test_the_recipe_stops_with_one_line_when_a_corpus_is_missing(tmp_path, missing):
    env = {**os.environ, "SPEECHOCEAN762_DIR": str(CORPORA / "speechocean762")}
    env |= {"FSDD_DIR": str(CORPORA / "fsdd"), missing: str(tmp_path / "absent")}
    if missing == "FSDD_DIR" and not (CORPORA / "speechocean762").is_dir():
        pytest.skip(f"needs {CORPORA / 'speechocean762'} to reach the FSDD check")
    result = subprocess.run(
        ["bash", str(RECIPE / "run.sh")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert str(tmp_path / "absent") in line and missing in line
    assert ("openslr.org/101" if missing == "SPEECHOCEAN762_DIR" else "Jakobovski") in line


def _tiny_kaldi_copy(corpus: Path, out: Path, part: str, speakers: list[str]) -> None:
    """``out/part`` with the Kaldi files of ``corpus/part`` cut to 5 utterances of each of
    ``speakers``; ``wav.scp`` paths point into ``corpus`` (absolute). Transcripts with an
    apostrophe are left out: the tiny pretraining corpus of the test never spells one, and
    fine-tuning refuses text its vocabulary cannot write."""
    source, target = corpus / part, out / part
    target.mkdir(parents=True)
    texts = dict(line.split(maxsplit=1) for line in (source / "text").read_text().splitlines())
    utterances = {}
    for line in (source / "utt2spk").read_text().splitlines():
        utterance, speaker = line.split()
        chosen = sum(s == speaker for s in utterances.values())
        if speaker in speakers and chosen < 5 and "'" not in texts[utterance]:
            utterances[utterance] = speaker
    for name in ("wav.scp", "text", "utt2spk"):
        lines = (source / name).read_text().splitlines()
        kept = [line for line in lines if line.split(maxsplit=1)[0] in utterances]
        if name == "wav.scp":
            kept = [f"{u}\t{corpus / p}" for u, p in (line.split(maxsplit=1) for line in kept)]
        (target / name).write_text("\n".join(kept) + "\n")
    for name in ("spk2age", "spk2gender"):
        lines = (source / name).read_text().splitlines()
        kept = [line for line in lines if line.split()[0] in speakers]
        (target / name).write_text("\n".join(kept) + "\n")


def _speakers_by_age(data_dir: Path) -> tuple[list[str], list[str]]:
    ages = dict(line.split() for line in (data_dir / "spk2age").read_text().splitlines())
    young = sorted(s for s, age in ages.items() if int(age) < 18)
    return young, sorted(s for s, age in ages.items() if int(age) >= 18)


@pytest.mark.slow
@pytest.mark.skipif(
    not (CORPORA / "speechocean762").is_dir() or not (CORPORA / "fsdd").is_dir(),
    reason=f"needs the real corpora in {CORPORA} (speechocean762 and fsdd)",
)
def test_the_recipe_runs_end_to_end_on_a_few_dozen_real_utterances(tmp_path):
    corpus = CORPORA / "speechocean762"
    young, old = _speakers_by_age(corpus / "train")
    _tiny_kaldi_copy(corpus, tmp_path / "so762", "train", young[:3] + old[:3])
    young, old = _speakers_by_age(corpus / "test")
    _tiny_kaldi_copy(corpus, tmp_path / "so762", "test", young[:1] + old[:1])
    digits = tmp_path / "fsdd" / "recordings"
    digits.mkdir(parents=True)
    for path in sorted((CORPORA / "fsdd" / "recordings").glob("*_jackson_0.wav"))[:4]:
        (digits / path.name).symlink_to(path)
    env = {
        **os.environ,
        "SPEECHOCEAN762_DIR": str(tmp_path / "so762"),
        "FSDD_DIR": str(tmp_path / "fsdd"),
        "CACHE_DIR": str(tmp_path / "cache"),
        "PHONE_MENU_DIR": str(tmp_path / "phone_menu"),
        "PHONE_MENU_SIZES": "--num-train 100 --num-dev 4 --num-test-per-voice 0",
        "EXP_DIR": str(tmp_path / "exp"),
        "MS2S_VENV": str(Path(sys.executable).parent.parent),
        "DEV_CHILDREN": "1",
        "DEV_ADULTS": "1",
        "TTS_VOICES_PER_SENTENCE": "1",
        "INSTALL_PACKAGES": "0",
        "OMP_NUM_THREADS": "1",
    }
    tiny = [
        "train.epochs=1",
        "encoder.hidden_dim=16",
        "decoder.hidden_dim=32",
        "search.beam_size=2",
    ]
    result = subprocess.run(
        ["bash", str(RECIPE / "run.sh"), *tiny], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifests = {n: tmp_path / "cache" / f"{n}.jsonl" for n in ("train", "dev", "test.all", "fsdd")}
    counts = {n: len(path.read_text().splitlines()) for n, path in manifests.items()}
    assert counts == {"train": 20, "dev": 10, "test.all": 10, "fsdd": 4}
    assert len((tmp_path / "cache" / "tts" / "train.jsonl").read_text().splitlines()) == 20
    results = (tmp_path / "exp" / "results.md").read_text()
    assert "|decode_beam8/test|10|" in results and "|decode_greedy/fsdd|4|4|" in results
    assert "|beam8|" in results and "|greedy|" in results  # WER by age, both decodings
    assert (tmp_path / "exp.lm" / "best.pt").is_file()  # the language model beam 8 fuses
