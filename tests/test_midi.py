import pytest

from conftest import make_score, note_tuples
from lstmidi.errors import MidiError
from lstmidi.midi import load_score


def two_tracks_and_drums():
    score = make_score([(0, 480, 60)])
    second = make_score([(480, 480, 48)], program=32).tracks[0]
    drums = make_score([(0, 120, 36)], drum=True).tracks[0]
    score.tracks.extend([second, drums])
    return score


def test_merge_keeps_pitched_tracks_and_drops_drums(tmp_path):
    path = tmp_path / "a.mid"
    two_tracks_and_drums().dump_midi(path)
    score = load_score(path)
    assert len(score.tracks) == 1
    assert note_tuples(score) == [(0, 480, 60, 90), (480, 480, 48, 90)]
    with_drums = load_score(path, drums=True)
    assert sorted(len(t.notes) for t in with_drums.tracks) == [1, 2]
    assert [t.is_drum for t in with_drums.tracks] == [False, True]


def test_all_keeps_each_track_apart(tmp_path):
    path = tmp_path / "a.mid"
    two_tracks_and_drums().dump_midi(path)
    score = load_score(path, tracks="all")
    assert [(t.program, t.is_drum, len(t.notes)) for t in score.tracks] == [(0, False, 1), (32, False, 1)]
    assert [t.is_drum for t in load_score(path, tracks="all", drums=True).tracks] == [False, False, True]


def test_choose_one_track(tmp_path):
    path = tmp_path / "a.mid"
    two_tracks_and_drums().dump_midi(path)
    assert note_tuples(load_score(path, tracks=1)) == [(480, 480, 48, 90)]
    with pytest.raises(MidiError, match=r"a\.mid: no track 7 \(tracks: 0: .*1 notes"):
        load_score(path, tracks=7)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"hello, I am a text file", "not a MIDI file"),
        (None, "truncated MIDI file"),
    ],
)
def test_bad_files_raise_midierror_naming_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    if content is None:
        good = tmp_path / "good.mid"
        make_score([(i * 240, 240, 60 + i % 12) for i in range(50)]).dump_midi(good)
        content = good.read_bytes()[:20]  # cut inside the first track's header; later cuts are recovered (test_lenient)
    path.write_bytes(content)
    with pytest.raises(MidiError) as err:
        load_score(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_missing_file_and_no_notes(tmp_path):
    with pytest.raises(MidiError, match="nope.mid: file not found"):
        load_score(tmp_path / "nope.mid")
    empty = make_score([])
    empty.dump_midi(tmp_path / "silent.mid")
    with pytest.raises(MidiError, match="silent.mid: no notes"):
        load_score(tmp_path / "silent.mid")
    make_score([(0, 120, 36)], drum=True).dump_midi(tmp_path / "drums.mid")
    with pytest.raises(MidiError, match="drums.mid: only drum notes"):
        load_score(tmp_path / "drums.mid")


def test_melody_keeps_the_pitched_track_with_most_notes(tmp_path):
    score = make_score([(0, 480, 60)])  # track 0: 1 note
    score.tracks.append(make_score([(0, 240, 72), (240, 240, 74)], program=40).tracks[0])  # track 1: 2 notes
    score.tracks.append(make_score([(0, 120, 36), (120, 120, 38), (240, 120, 36)], drum=True).tracks[0])  # drums: 3
    score.tracks.append(make_score([(480, 240, 48), (720, 240, 50)], program=32).tracks[0])  # track 3: 2 notes (tie)
    path = tmp_path / "a.mid"
    score.dump_midi(path)
    for drums in (False, True):
        melody = load_score(path, tracks="melody", drums=drums)
        assert len(melody.tracks) == 1 and melody.tracks[0].program == 40  # tie with track 3: lowest index wins
        assert note_tuples(melody) == [(0, 240, 72, 90), (240, 240, 74, 90)]
    make_score([(0, 120, 36)], drum=True).dump_midi(tmp_path / "drums.mid")
    with pytest.raises(MidiError, match="drums.mid: only drum notes"):
        load_score(tmp_path / "drums.mid", tracks="melody", drums=True)
