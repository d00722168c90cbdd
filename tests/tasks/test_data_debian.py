"""Debian documentation packages as data sources: a ``.deb`` (built here, no network) checked
against its pinned sha256 and read in memory as an ar archive; the FAQ's questions and a
Japanese text's paragraphs read from their wrapped plain-text renderings."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from specfair.errors import SpecfairError
from specfair.tasks import datasets
from specfair.tasks.datasets import (
    DataFile,
    DataSource,
    deb_data_member,
    deb_download,
    fetch_sources,
    source_path,
)
from specfair.tasks.readers_debian import cjk_paragraphs, faq_questions, join_wrapped

MEMBER = "./usr/share/doc/toy/toy.txt.gz"
TEXT = b"the packaged text\n"


def _tar_xz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def _ar(entries: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in entries:
        head = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}".encode() + b"`\n"
        out += head + data + (b"\n" if len(data) % 2 else b"")
    return out


def _deb(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    return _ar([("debian-binary", b"2.0\n"), ("control.tar.xz", _tar_xz({"./control": b"x"})),
                ("data.tar.xz", _tar_xz(members, links))])


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECFAIR_DATA", raising=False)
    return tmp_path / "home"


def _source(monkeypatch, tmp_path, deb: bytes, pin: bytes | None = None) -> DataSource:
    """A source ``debby`` whose one file is MEMBER of a .deb in a file:// mirror's pool."""
    pool = tmp_path / "mirror" / "pool" / "main" / "t" / "toy"
    pool.mkdir(parents=True, exist_ok=True)
    (pool / "toy_1.0_all.deb").write_bytes(deb)
    monkeypatch.setenv("SPECFAIR_DEBIAN_MIRROR", (tmp_path / "mirror").as_uri())
    src = DataSource("debby", (DataFile("toy.txt.gz", hashlib.sha256(TEXT).hexdigest(),
                                        member=MEMBER, deb="main/t/toy/toy_1.0_all.deb"),),
                     license="CC0", origin="a test",
                     debs={"main/t/toy/toy_1.0_all.deb":
                           hashlib.sha256(pin if pin is not None else deb).hexdigest()})
    monkeypatch.setitem(datasets.SOURCES, "debby", src)
    return src


def test_a_deb_is_downloaded_checked_and_read_in_memory(home, tmp_path, monkeypatch):
    # a member that tries to leave the folder and a link are in the archive: never written
    deb = _deb({MEMBER: TEXT, "../../outside.txt": b"no"}, {"./usr/x": "/etc/passwd"})
    src = _source(monkeypatch, tmp_path, deb)
    fetch_sources(["debby"], log=lambda _: None)
    assert source_path("debby", "toy.txt.gz").read_bytes() == TEXT
    assert sorted(p.name for p in (home / "data" / "debby").iterdir()) == [
        "SOURCE.json", "toy.txt.gz"]
    assert not (tmp_path / "outside.txt").exists() and not (home / "outside.txt").exists()
    assert src.where() == "Debian toy_1.0_all.deb"


def test_a_deb_of_another_hash_is_one_error_and_nothing_is_kept(home, tmp_path, monkeypatch):
    _source(monkeypatch, tmp_path, _deb({MEMBER: TEXT}), pin=b"another package")
    with pytest.raises(SpecfairError, match=r"^data source debby: toy_1\.0_all\.deb has sha256 "
                                            r".*not the package this specfair pins"):
        fetch_sources(["debby"], log=lambda _: None)
    assert not (home / "data" / "debby").exists()


def test_a_missing_member_a_link_or_a_wrong_member_hash_is_one_error(home, tmp_path,
                                                                     monkeypatch):
    _source(monkeypatch, tmp_path, _deb({"./other": TEXT}))
    with pytest.raises(SpecfairError, match=r"toy_1\.0_all\.deb has no file \./usr/share/doc"):
        fetch_sources(["debby"], log=lambda _: None)
    _source(monkeypatch, tmp_path, _deb({}, {MEMBER: "/etc/passwd"}))  # a link: not a file
    with pytest.raises(SpecfairError, match="has no file"):
        fetch_sources(["debby"], log=lambda _: None)
    _source(monkeypatch, tmp_path, _deb({MEMBER: b"other text\n"}))
    with pytest.raises(SpecfairError, match=r"toy\.txt\.gz has sha256 .*expected"):
        fetch_sources(["debby"], log=lambda _: None)
    assert not (home / "data" / "debby").exists()


def test_not_a_deb_and_an_unreachable_mirror(tmp_path, monkeypatch):
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(SpecfairError, match="not a Debian package"):
        deb_data_member(bad, MEMBER)
    bad.write_bytes(_ar([("debian-binary", b"2.0\n")]))
    with pytest.raises(SpecfairError, match="no data.tar.xz"):
        deb_data_member(bad, MEMBER)
    bad.write_bytes(_ar([("data.tar.xz", b"not xz at all")]))
    with pytest.raises(SpecfairError, match="unreadable data.tar.xz"):
        deb_data_member(bad, MEMBER)
    monkeypatch.setenv("SPECFAIR_DEBIAN_MIRROR", (tmp_path / "nowhere").as_uri())
    with pytest.raises(SpecfairError, match=r"could not download .*nowhere/pool/main/t/x\.deb"
                                            r".*SPECFAIR_DEBIAN_MIRROR"):
        deb_download("main/t/x.deb", tmp_path / "d")
    (tmp_path / "big" / "pool").mkdir(parents=True)
    (tmp_path / "big" / "pool" / "x.deb").write_bytes(b"x" * 2048)
    monkeypatch.setenv("SPECFAIR_DEBIAN_MIRROR", (tmp_path / "big").as_uri())
    monkeypatch.setattr(datasets, "MAX_DEB_BYTES", 1024)
    with pytest.raises(SpecfairError, match="larger than"):
        deb_download("x.deb", tmp_path / "d")


def test_the_real_sources_are_pinned_debs_of_debian_documentation():
    for name in ("debian_faq", "debian_reference_ja", "debian_reference_zh"):
        src = datasets.SOURCES[name]
        assert src.debs and all(len(h) == 64 for h in src.debs.values())
        assert all(f.deb in src.debs and f.member.startswith("./usr/share/") for f in src.files)
    assert [f.name for f in datasets.SOURCES["debian_faq"].files] == [
        "debian-faq.en.txt.gz", "debian-faq.ja.txt.gz", "debian-faq.zh-cn.txt.gz"]


FAQ = """The Debian GNU/Linux FAQ

Table of Contents

1. Definitions and overview
    1.1. What is this FAQ?
    1.2. What is the difference between Debian GNU/Linux and other Linux
    distributions? Why should I choose Debian?
2. Getting Debian
    2.1. Where can I get it?
        2.1.1. You asked me to install stable, but it does not
        work. What should I do?

1. Definitions and overview

1.1. What is this FAQ?

    This document gives frequently asked questions.
"""

FAQ_JA = """目次

1. 定義と概要
    1.1. この FAQ は何?
    1.2. Debian GNU/Linux と他の Linux ディストリビューションの違いは何?
    他のディストリビューションよりも Debian を選択すべき理由は?
    1.3. 公式の安定版リリース CD-ROM に「frozen」へのシンボリックリンクがあるのは何
    故?

1.1. この FAQ は何?
"""


def _gz(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_faq_questions_are_read_from_the_contents_with_their_wrapped_lines(tmp_path):
    assert faq_questions(_gz(tmp_path, "en.txt.gz", FAQ)) == {
        "1.1": "What is this FAQ?",
        "1.2": "What is the difference between Debian GNU/Linux and other Linux distributions? "
               "Why should I choose Debian?",
        "2.1": "Where can I get it?",
        "2.1.1": "You asked me to install stable, but it does not work. What should I do?"}
    ja = faq_questions(_gz(tmp_path, "ja.txt.gz", FAQ_JA))
    assert ja["1.2"] == ("Debian GNU/Linux と他の Linux ディストリビューションの違いは何? "
                         "他のディストリビューションよりも Debian を選択すべき理由は?")
    assert ja["1.3"].endswith("シンボリックリンクがあるのは何故?")  # no space inside a word
    with pytest.raises(SpecfairError, match="no table of contents"):
        faq_questions(_gz(tmp_path, "none.txt.gz", "just text\n"))
    (tmp_path / "plain.txt.gz").write_text("not gzip")
    with pytest.raises(SpecfairError, match="not a readable gzip text"):
        faq_questions(tmp_path / "plain.txt.gz")


def test_cjk_paragraphs_keep_prose_and_drop_listings(tmp_path):
    text = ("第1章. チュートリアル\n\n"
            "    本 Debian リファレンスはシステムインストール後のユーザー案内書として、\n"
            "    Debian システムの広範な概論を提供します。\n\n"
            "    +---------------------------------------------+\n"
            "    |パッケージ|ポプコン|サイズ|説明                  |\n\n"
            "    $ sudo apt-get install aptitude\n\n"
            "    see https://www.debian.org/doc/manuals/debian-reference/ for more.\n")
    paras = cjk_paragraphs(_gz(tmp_path, "ref.txt.gz", text))
    assert paras == ["本 Debian リファレンスはシステムインストール後のユーザー案内書として、"
                     "Debian システムの広範な概論を提供します。"]
    assert join_wrapped(["abc", "  def", "", "日本", "語", "は", "Debian", "を、", "x"]) == (
        "abc def 日本語は Debian を、x")


def _write_debian(data):
    """Small Debian texts in the cache, recorded as fetched."""
    toc = {"en": ["What is Debian?", "How do I keep it current?"],
           "ja": ["Debian とは何?", "Debian システムを現行版に維持する方法は?"],
           "zh-cn": ["什么是 Debian？", "如何使 Debian 系统保持最新？"]}
    for lang, qs in toc.items():
        text = "Contents\n\n1. Overview\n" + "".join(f"    1.{i + 1}. {q}\n"
                                                  for i, q in enumerate(qs))
        (data / "debian_faq").mkdir(parents=True, exist_ok=True)
        (data / "debian_faq" / f"debian-faq.{lang}.txt.gz").write_bytes(
            gzip.compress(text.encode()))
    for lang, file, para in (("ja", "ja", "本 Debian リファレンスはユーザー案内書として"
                                           "Debian システムの広範な概論を提供します。第{}版"),
                             ("zh", "zh-cn", "要求系统管理员执行的操作，须用祈使句描述，如在 shell "
                                             "中输入命令字符串后，键入回车键。第{}个")):
        folder = data / f"debian_reference_{lang}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join("    " + para.format(i) for i in range(4)) + "\n\n    $ ls -l\n"
        (folder / f"debian-reference.{file}.txt.gz").write_bytes(gzip.compress(body.encode()))
    for name in ("debian_faq", "debian_reference_ja", "debian_reference_zh"):
        datasets.write_manifest(datasets.SOURCES[name], pinned=False)


def test_the_debian_texts_join_the_human_written_and_monolingual_sets(home, monkeypatch):
    import shutil

    from study_data import write_study_sources

    from specfair.study.monolingual import _read
    from specfair.tasks.study import debian_faq, debian_reference, human_written, monolingual

    write_study_sources(home / "data")
    _write_debian(home / "data")
    en, ja = debian_faq("en"), debian_faq("ja")
    assert [p.id for p in ja] == ["debian_faq_ja-1.1", "debian_faq_ja-1.2"]
    assert [p.group for p in ja] == [p.group for p in en] == ["debian faq 1.1", "debian faq 1.2"]
    assert ja[1].text == "Debian システムを現行版に維持する方法は?" and ja[0].task == "faq_ja"
    with pytest.raises(SpecfairError, match="no language 'fr'"):
        debian_faq("fr")
    hw = human_written("ja", mgsm=False)
    assert [(p.id, p.task, p.source) for p in hw] == [
        ("debian_faq_ja-1.1", "ja", "debian_faq"), ("debian_faq_ja-1.2", "ja", "debian_faq")]
    assert [p.source for p in human_written("zh")].count("debian_faq") == 2
    ref = debian_reference("zh")
    assert len(ref) == 4 and ref[2].id == "debian_reference_zh-2"
    assert ref[2].group == "debian reference zh 2" and ref[2].text.endswith("第2个")
    mono = monolingual("ja", mgsm=False)
    assert [p.source for p in mono] == ["debian_reference_ja"] * 4 + ["debian_faq"] * 2
    assert {p.task for p in mono} == {"monolingual_ja"}
    zh = monolingual("zh", mgsm=False)
    assert [s for s in ("hsk", "debian_reference_zh", "debian_faq")
            if any(p.source == s for p in zh)] == ["hsk", "debian_reference_zh", "debian_faq"]
    # the arm reads what is fetched, and says what is not and how to fetch it
    texts, note = _read("ja", monolingual)
    assert note is None and {"debian_reference_ja", "debian_faq"} <= {p.source for p in texts}
    assert any(p.source.startswith("mgsm") for p in texts)
    shutil.rmtree(home / "data" / "debian_reference_ja")
    texts, note = _read("ja", monolingual)
    assert [p.source for p in texts if p.source.startswith("debian")] == ["debian_faq"] * 2
    assert note.startswith("debian_reference_ja not read (missing")
    assert "`specfair data fetch debian_reference_ja`" in note
    texts, note = _read("en", monolingual)
    assert note is None and {p.source for p in texts} == {"hsk"}
