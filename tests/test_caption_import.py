"""Caption importers (COCO, Flickr8k/30k, captions.tsv) on tiny files the tests write."""

import json

import pytest
from PIL import Image

from multimodal_s2s.cli import main
from multimodal_s2s.data.caption_import import import_caption_tsv, import_coco, import_flickr
from multimodal_s2s.data.images import ImageData, ImageDataConfig
from multimodal_s2s.errors import InputError


def write_images(folder, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.new("RGB", (20 + index, 10), (index * 40, 0, 0)).save(folder / name)


def coco_file(path, file_names: list[str]) -> None:
    """A COCO caption file: image 1 with two captions, image 2 with one, 3 with none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "info": {},
        "images": [
            {"id": 3 - i, "file_name": name, "width": 20 + i, "height": 10}
            for i, name in enumerate(file_names)
        ],
        "annotations": [
            {"id": 10, "image_id": 2, "caption": "A dog runs. "},
            {"id": 11, "image_id": 3, "caption": "a cat\n sits"},
            {"id": 12, "image_id": 2, "caption": "A  brown dog"},
        ],
    }
    path.write_text(json.dumps(content))


def test_import_coco_groups_captions_per_image_in_the_coco_layout(tmp_path):
    names = ["000000000003.jpg", "000000000002.jpg", "000000000001.jpg"]
    write_images(tmp_path / "train2017", names)
    src = tmp_path / "annotations" / "captions_train2017.json"
    coco_file(src, names)
    records = import_coco(src)  # the images folder found from the COCO layout
    folder = tmp_path / "train2017"
    assert records == [
        {
            "id": "3",
            "image": str(folder / names[0]),
            "caption": "a cat sits",
            "captions": ["a cat sits"],
            "width": 20,
            "height": 10,
        },
        {
            "id": "2",
            "image": str(folder / names[1]),
            "caption": "A dog runs.",
            "captions": ["A dog runs.", "A brown dog"],
            "width": 21,
            "height": 10,
        },
    ]
    elsewhere = tmp_path / "pictures"
    write_images(elsewhere, names)
    assert import_coco(src, elsewhere)[0]["image"] == str(elsewhere / names[0])


def test_import_coco_errors(tmp_path):
    with pytest.raises(InputError, match="COCO caption file not found"):
        import_coco(tmp_path / "absent.json")
    src = tmp_path / "captions_val.json"
    src.write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="needs 'images' and 'annotations'"):
        import_coco(src, tmp_path)
    coco_file(src, ["a.jpg"])
    with pytest.raises(InputError, match="no images folder found .* give it with --images$"):
        import_coco(src)
    with pytest.raises(InputError, match="none of its 1 captioned images is in"):
        import_coco(src, tmp_path)


def test_import_flickr_token_file_skips_a_missing_image_with_a_warning(tmp_path):
    write_images(tmp_path / "Flicker8k_Dataset", ["1_a.jpg", "2_b.jpg"])
    src = tmp_path / "Flickr8k.token.txt"
    src.write_text(
        "1_a.jpg#0\tA child climbs .\n"
        "1_a.jpg#1\tA girl in pink .\n"
        "2_b.jpg#0\tTwo dogs\n"
        "2_b.jpg.1#0\tAn image the corpus lacks\n"
        "\n"
    )
    with pytest.warns(UserWarning, match=r"skipping 1 image\(s\) not found .*2_b\.jpg\.1"):
        records = import_flickr(src)
    folder = tmp_path / "Flicker8k_Dataset"
    assert [(r["id"], r["image"], r["captions"]) for r in records] == [
        ("1_a.jpg", str(folder / "1_a.jpg"), ["A child climbs .", "A girl in pink ."]),
        ("2_b.jpg", str(folder / "2_b.jpg"), ["Two dogs"]),
    ]
    assert all(r["caption"] == r["captions"][0] for r in records)


def test_import_flickr30k_results_csv_reads_a_line_missing_its_separator(tmp_path):
    write_images(tmp_path / "flickr30k_images", ["10.jpg", "11.jpg"])
    src = tmp_path / "results.csv"
    src.write_text(
        "image_name| comment_number| comment\n"
        "10.jpg| 0| Two young guys .\n"
        "10.jpg| 1| Two men | outside\n"
        "11.jpg| 4 A dog runs\n"
    )
    records = import_flickr(src)
    assert [r["captions"] for r in records] == [
        ["Two young guys .", "Two men | outside"],
        ["A dog runs"],
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("1.jpg 0 a caption\n", "expected 'IMAGE#N<TAB>caption'"),
        ("1.jpg#x\tcap\n", "expected 'IMAGE#N<TAB>caption', got '1.jpg#x"),
    ],
)
def test_import_flickr_names_a_malformed_line(tmp_path, content, expected):
    src = tmp_path / "Flickr8k.token.txt"
    src.write_text("1.jpg#0\tfine\n" + content)
    with pytest.raises(InputError, match=f"Flickr8k.token.txt:2: {expected}"):
        import_flickr(src, tmp_path)


def test_import_caption_tsv_folder(tmp_path):
    write_images(tmp_path / "pics" / "sub", ["b.png"])
    write_images(tmp_path / "pics", ["a.png"])
    (tmp_path / "pics" / "captions.tsv").write_text(
        "file\tcaption\nsub/b.png\ta blue thing\na.png\ta red thing\nsub/b.png\tsomething blue\n"
    )
    records = import_caption_tsv(tmp_path / "pics")
    assert [(r["id"], r["image"], r["caption"], r["captions"]) for r in records] == [
        (
            "sub/b.png",
            str(tmp_path / "pics/sub/b.png"),
            "a blue thing",
            ["a blue thing", "something blue"],
        ),
        ("a.png", str(tmp_path / "pics/a.png"), "a red thing", ["a red thing"]),
    ]
    (tmp_path / "pics" / "captions.tsv").write_text("a.png\tfine\na.png no tab\n")
    with pytest.raises(InputError, match=r"captions.tsv:2: expected 'file<TAB>caption'"):
        import_caption_tsv(tmp_path / "pics" / "captions.tsv")
    with pytest.raises(InputError, match="captions file not found"):
        import_caption_tsv(tmp_path)


def test_ms2s_import_caption_layouts_write_manifests_the_image_source_reads(tmp_path, capsys):
    write_images(tmp_path / "pics", ["a.png", "b.png"])
    (tmp_path / "pics" / "captions.tsv").write_text(
        "a.png\tA Red  thing\na.png\ta crimson thing\nb.png\ta blue thing\n"
    )
    out = tmp_path / "out" / "train.jsonl"
    assert main(["import", "caption-tsv", str(tmp_path / "pics"), str(out)]) == 0
    assert f"wrote 2 images (3 captions) to {out}" in capsys.readouterr().out
    data = ImageData(ImageDataConfig(train=str(out), dev=str(out), num_workers=0))
    assert data.texts("train") == ["a red thing", "a crimson thing", "a blue thing"]
    assert data.references("dev") == [["a red thing", "a crimson thing"], ["a blue thing"]]

    src = tmp_path / "captions_val.json"
    coco_file(src, ["a.png", "b.png"])
    assert main(["import", "coco", str(src), str(out), "--images", str(tmp_path / "pics")]) == 0
    assert "wrote 2 images (3 captions)" in capsys.readouterr().out
    assert main(["import", "kaldi", str(tmp_path), str(out), "--images", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --images is for the caption layouts, not 'kaldi'\n"
