"""Readers pulling "next case" and submitting at the same time, on real PostgreSQL with real threads.

Twenty readers (threads, each with its own database connection) start together and loop "next case" → save
until nothing is left. Afterwards: every case has exactly k submitted reads from k different readers, no read
was lost (one ReadVersion per save that returned), nobody read a case twice, and a monitor that polled the
assignments during the run never saw more than k live slots on a case. Variants: readers who walk away from a
claim (its expiry simulated in the database) and the slots going back to the pool; two saves of one read on
the same base version; the same race over HTTP against the live server.
"""

import random
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import pydicom
import pytest
import requests
from django.db import connection
from django.utils import timezone
from pydicom.uid import generate_uid

from tests.annotation.conftest import SCHEMA

pytestmark = pytest.mark.django_db(transaction=True)

TEMPLATE = "transfer_syntaxes/dcm_qa_ts/1.dcm"  # one real 384x384 MR slice
THREAD_TIMEOUT = 60


# ------------------------------------------------------------------------------------------------- set-up
@pytest.fixture
def synthetic_studies(shared_data, tmp_path):
    """Distinct studies made cheaply: copies of one real file with new Study/Series/SOP UIDs, ingested."""
    from imaging.services.ingest import ingest_file

    template = pydicom.dcmread(shared_data / "dicom" / TEMPLATE)

    def make(owner, n: int) -> list[str]:
        uids = []
        for i in range(n):
            ds = template.copy()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.PatientID, ds.AccessionNumber = f"CONC{i:04d}", f"ACC{i:05d}"
            path = tmp_path / f"study_{ds.StudyInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            result = ingest_file(str(path), user=owner, source="test")
            assert result.ok and result.status == "stored", result.reason
            uids.append(result.study_uid)
        return uids

    return make


@dataclass
class Campaign:
    project: object
    lead: object
    readers: list
    case_ids: list[int]


@pytest.fixture
def campaign(make_user, synthetic_studies):
    """A project with ``k`` reads per case, ``readers`` radiologist members and ``cases`` synthetic cases."""
    from annotation.models import Case
    from annotation.services.projects import cases_add, member_add, project_create

    def make(*, readers: int, cases: int, k: int = 3, prefix: str = "") -> Campaign:
        # No passwords: hashing 21 of them costs seconds, and readers here authenticate by token if at all.
        lead = make_user("lead", f"{prefix}lead", password=None)
        people = [make_user("radiologist", f"{prefix}reader{i:02d}", password=None) for i in range(readers)]
        uids = synthetic_studies(lead, cases)
        project = project_create(
            user=lead, name=f"{prefix}concurrency", schema=SCHEMA, reads_per_case=k, agreement_threshold=0.6
        )
        for person in people:
            member_add(project=project, user=lead, member=person, role="radiologist")
        assert cases_add(project=project, user=lead, study_uids=uids) == {"added": cases, "skipped": 0}
        case_ids = list(Case.objects.filter(project=project).order_by("id").values_list("id", flat=True))
        return Campaign(project, lead, people, case_ids)

    return make


# ------------------------------------------------------------------------------------- running threads
@dataclass
class Tally:
    """What the threads did, recorded under a lock: every claim, every save that returned, every early "none"."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    claims: list = field(default_factory=list)  # (reader_id, case_id)
    saves: list = field(default_factory=list)  # (reader_id, case_id, version, submitted)
    premature: list = field(default_factory=list)  # (reader_id, case ids): told "none" while these were free

    def add(self, name: str, row) -> None:
        with self.lock:
            getattr(self, name).append(row)


def run_together(fn, arg_lists: list[tuple], timeout: float = THREAD_TIMEOUT) -> None:
    """Run ``fn(*args)`` in one thread per argument tuple, all released at once by a barrier; fail the test
    with every thread's traceback if any raised, or if any is still running after ``timeout``."""
    barrier = threading.Barrier(len(arg_lists))
    errors: list[str] = []

    def body(*args):
        try:
            barrier.wait(timeout=30)
            fn(*args)
        except BaseException:  # noqa: BLE001 - reported to the test below
            errors.append(traceback.format_exc())
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=body, args=args, daemon=True) for args in arg_lists]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], f"threads still running after {timeout}s"
    assert not errors, f"{len(errors)} thread(s) failed:\n" + "\n".join(errors)


def answers_for(rng: random.Random) -> dict:
    return {"finding": rng.choice("ABC"), "likelihood": rng.randint(1, 5)}


def open_slots(project, reader=None) -> list[int]:
    """Open cases of the project with a free slot right now (committed state), that ``reader`` (if given)
    has not read. In these tests slots only ever fill up while readers run, so a case found here after a
    reader was told "nothing left" had its free slot at that moment too."""
    from annotation.models import Case, CaseState
    from annotation.services.claims import slots_taken

    now = timezone.now()
    cases = Case.objects.filter(project=project, state=CaseState.OPEN).order_by("id")
    if reader is not None:
        cases = cases.exclude(assignments__reader=reader, assignments__state="submitted")
    return [c.pk for c in cases if slots_taken(c.pk, now=now, exclude_reader=reader) < project.reads_per_case]


def claim_next(project, reader, tally: Tally, *, deadline: float):
    """``case_claim_next``; a None while a case still has a free slot for this reader is recorded in
    ``tally.premature`` and the reader asks again (see test_next_case_is_not_empty_* for that bug), so that the
    run still ends with every slot read and the other invariants can be checked."""
    from annotation.services.claims import case_claim_next

    while True:
        assignment = case_claim_next(project=project, reader=reader)
        if assignment is not None:
            return assignment
        left = open_slots(project, reader)
        if not left:
            return None
        tally.add("premature", (reader.pk, left))
        assert time.monotonic() < deadline, (
            f"{reader.username} kept being told 'no case' while {left} were free"
        )
        time.sleep(0.01)


def read_until_done(project, reader, tally: Tally, draft_first: bool = False) -> None:
    """A reader's loop: "next case", (a draft, then) the submitted read, until "next case" has nothing."""
    from annotation.services.reads import read_save

    rng = random.Random(reader.pk)
    deadline = time.monotonic() + THREAD_TIMEOUT / 2
    while True:
        assignment = claim_next(project, reader, tally, deadline=deadline)
        if assignment is None:
            return
        case = assignment.case
        tally.add("claims", (reader.pk, case.pk))
        base = 0
        if draft_first:
            version = read_save(
                case=case,
                reader=reader,
                answers={"finding": rng.choice("ABC")},
                submit=False,
                base_version=0,
                time_spent_seconds=1,
            )
            tally.add("saves", (reader.pk, case.pk, version.version, False))
            base = version.version
        version = read_save(
            case=case,
            reader=reader,
            answers=answers_for(rng),
            confidence=rng.randint(1, 5),
            submit=True,
            base_version=base,
            time_spent_seconds=2,
        )
        tally.add("saves", (reader.pk, case.pk, version.version, True))


def report_premature(tally: Tally) -> None:
    """ "Next case" must never answer none while a case still has a free slot for that reader."""
    readers = len({r for r, _ in tally.premature})
    assert not tally.premature, (
        f'{len(tally.premature)} times ({readers} readers) "next case" answered none while cases still had '
        "a free slot for that reader"
    )


class SlotMonitor:
    """Polls, on its own connection, the most live slots (submitted, or claimed and unexpired) any case of
    the project holds, while the readers run: the invariant must hold at every instant, not only at the end."""

    def __init__(self, project):
        self.project, self.max_seen, self.polls = project, 0, 0
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        sql = (
            "SELECT coalesce(max(n), 0) FROM (SELECT a.case_id, count(*) AS n FROM annotation_assignment a "
            "JOIN annotation_case c ON c.id = a.case_id WHERE c.project_id = %s AND (a.state = 'submitted' "
            "OR (a.state = 'claimed' AND (a.expires_at IS NULL OR a.expires_at > now()))) "
            "GROUP BY a.case_id) per_case"
        )
        try:
            while not self.stop.is_set():
                with connection.cursor() as cursor:
                    cursor.execute(sql, [self.project.pk])
                    self.max_seen = max(self.max_seen, cursor.fetchone()[0])
                self.polls += 1
                time.sleep(0.002)
        except BaseException:  # noqa: BLE001
            self.errors.append(traceback.format_exc())
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


# ------------------------------------------------------------------------------------------ the checks
def check_campaign_complete(c: Campaign, tally: Tally, *, drafts_of: frozenset = frozenset()) -> None:
    """Every case: exactly k submitted reads from k different readers, assignments agreeing; nothing lost.

    ``drafts_of``: readers who left a draft behind (checked by the caller), set aside here."""
    from annotation.models import Assignment, Case, CaseState, ClaimState, Read, ReadState, ReadVersion

    k = c.project.reads_per_case
    all_reads = Read.objects.filter(case__project=c.project)
    reads = list(all_reads.exclude(reader_id__in=drafts_of).values_list("case_id", "reader_id", "state"))
    pairs = Counter((case_id, reader_id) for case_id, reader_id, _ in reads)
    assert max(pairs.values()) == 1, "a reader has two reads of one case"
    submitted = Counter(case_id for case_id, _, state in reads if state == ReadState.SUBMITTED)
    assert submitted == dict.fromkeys(c.case_ids, k), f"submitted reads per case, expected {k} each"
    assert all(state == ReadState.SUBMITTED for _, _, state in reads), "a draft was left behind"
    assert not all_reads.filter(reader_id__in=drafts_of, state=ReadState.SUBMITTED).exists()

    # No read lost: one ReadVersion per save that returned, and each save's (case, reader, version) exists.
    rows = ReadVersion.objects.filter(read__case__project=c.project)
    versions = list(rows.values_list("read__case_id", "read__reader_id", "version"))
    saved = [(case_id, reader_id, v) for reader_id, case_id, v, _ in tally.saves]
    assert len(set(saved)) == len(saved), "two saves returned the same version of one read"
    assert len(versions) == len(saved), f"{len(versions)} ReadVersion rows for {len(saved)} saves"
    assert set(versions) == set(saved), (
        "ReadVersion rows differ from the saves the readers were told succeeded"
    )
    submits = Counter(case_id for _, case_id, _, sub in tally.saves if sub)
    assert submits == dict.fromkeys(c.case_ids, k)

    done = Assignment.objects.filter(case__project=c.project, state=ClaimState.SUBMITTED)
    assert Counter(done.values_list("case_id", flat=True)) == dict.fromkeys(c.case_ids, k)
    assert set(done.values_list("case_id", "reader_id")) == {(case_id, r) for case_id, r, _ in reads}
    cases = Case.objects.filter(project=c.project)
    assert {case.reads_submitted for case in cases} == {k}
    assert {case.state for case in cases} <= {CaseState.CONSENSUS, CaseState.ADJUDICATION}
    assert all(case.agreement is not None for case in cases)


# ------------------------------------------------------------------------------------------------- tests
def test_twenty_readers_in_parallel_never_over_read_lose_or_duplicate(campaign):
    from annotation.models import Assignment

    c = campaign(readers=20, cases=18, k=3)
    tally = Tally()
    with SlotMonitor(c.project) as monitor:
        run_together(read_until_done, [(c.project, r, tally, i % 2 == 0) for i, r in enumerate(c.readers)])
    assert not monitor.errors, monitor.errors
    assert monitor.polls > 0 and monitor.max_seen <= 3, f"a case had {monitor.max_seen} live slots"

    report_premature(tally)
    check_campaign_complete(c, tally)
    assert len(tally.claims) == 18 * 3 == len(set(tally.claims))
    assert Assignment.objects.filter(case__project=c.project).count() == 18 * 3


def test_abandoned_claims_return_to_the_pool_and_are_read_by_others(campaign):
    """Six readers claim a case and walk away; once their claims expire (simulated in the database), the
    others pull again and fill those slots; the walk-aways' late submissions are refused, nothing else moves."""
    from annotation.models import Assignment, Case, ClaimState, Read, ReadVersion
    from annotation.services.reads import read_save
    from core.errors import OkapiError

    c = campaign(readers=20, cases=16, k=3)
    quitters, stayers = c.readers[:6], c.readers[6:]
    tally = Tally()
    abandoned: dict[int, int] = {}  # reader id -> case id

    def walk_away(reader):
        assignment = claim_next(c.project, reader, tally, deadline=time.monotonic() + THREAD_TIMEOUT / 2)
        assert assignment is not None
        abandoned[reader.pk] = assignment.case_id
        # A draft before leaving: it is kept, but the slot must still go back to the pool on expiry.
        read_save(case=assignment.case, reader=reader, answers={"finding": "A"}, submit=False, base_version=0)
        tally.add("saves", (reader.pk, assignment.case_id, 1, False))

    def reader_or_quitter(reader, quits):
        walk_away(reader) if quits else read_until_done(c.project, reader, tally)

    with SlotMonitor(c.project) as monitor:
        run_together(reader_or_quitter, [(r, r in quitters) for r in c.readers])
        # The abandoned slots are still held: those cases are one read short.
        short = Case.objects.filter(project=c.project, reads_submitted__lt=3).values_list("id", flat=True)
        assert set(short) == set(abandoned.values())
        assert open_slots(c.project) == []
        # The claims expire.
        expired = Assignment.objects.filter(reader__in=quitters, state=ClaimState.CLAIMED).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
        assert expired == len(quitters)
        assert sorted(open_slots(c.project)) == sorted(set(abandoned.values()))
        run_together(read_until_done, [(c.project, r, tally) for r in stayers])
    assert not monitor.errors, monitor.errors
    assert monitor.max_seen <= 3, f"a case had {monitor.max_seen} live slots"
    report_premature(tally)

    # The drafts of the walk-aways are kept, not counted; the rest is the complete campaign.
    drafts = Read.objects.filter(reader__in=quitters)
    assert {(d.reader_id, d.case_id, d.state, d.version) for d in drafts} == {
        (r, case_id, "draft", 1) for r, case_id in abandoned.items()
    }
    check_campaign_complete(c, tally, drafts_of=frozenset(abandoned))

    # A walk-away comes back and submits: refused (the slot is someone else's now), nothing changes.
    before = ReadVersion.objects.filter(read__case__project=c.project).count()
    for reader in quitters:
        case = Case.objects.get(pk=abandoned[reader.pk])
        with pytest.raises(OkapiError) as err:
            read_save(
                case=case,
                reader=reader,
                answers={"finding": "B", "likelihood": 2},
                confidence=3,
                submit=True,
                base_version=1,
            )
        assert err.value.code in {"claim_expired", "case_closed"} and err.value.status == 409
    assert ReadVersion.objects.filter(read__case__project=c.project).count() == before
    assert Counter(Case.objects.filter(project=c.project).values_list("reads_submitted", flat=True)) == {
        3: 16
    }


def test_two_saves_of_one_read_on_the_same_base_version_one_wins_one_conflicts(campaign):
    """The same read saved at once from two places (two tabs) on version 0: exactly one save is kept, the other
    is told "version_conflict" (409) with the current version; then eight at once on version 1: one wins."""
    from annotation.models import Read, ReadVersion
    from annotation.services.claims import case_claim_next
    from annotation.services.reads import read_save
    from core.errors import OkapiError

    c = campaign(readers=1, cases=1, k=1)
    reader = c.readers[0]
    assignment = case_claim_next(project=c.project, reader=reader)

    for base, tabs in ((0, 2), (1, 8)):
        outcomes: list = []
        lock = threading.Lock()

        def save(i, base=base, outcomes=outcomes, lock=lock):
            try:
                v = read_save(
                    case=assignment.case,
                    reader=reader,
                    answers={"finding": "ABC"[i % 3]},
                    submit=False,
                    base_version=base,
                )
                result = ("saved", v.version, v.answers["finding"])
            except OkapiError as exc:
                result = ("refused", exc.code, exc.status, exc.detail)
            with lock:
                outcomes.append(result)

        run_together(save, [(i,) for i in range(tabs)])
        won = [o for o in outcomes if o[0] == "saved"]
        lost = [o for o in outcomes if o[0] == "refused"]
        assert len(won) == 1 and won[0][1] == base + 1, outcomes
        assert len(lost) == tabs - 1 and all(
            o[1:] == ("version_conflict", 409, {"current_version": base + 1}) for o in lost
        ), outcomes
        versions = list(
            ReadVersion.objects.filter(read__reader=reader)
            .order_by("version")
            .values_list("version", "answers")
        )
        assert [v for v, _ in versions] == list(range(1, base + 2)), "a save was lost or duplicated"
        assert versions[-1][1] == {"finding": won[0][2]}  # the kept version is the winner's
        assert Read.objects.get(reader=reader).version == base + 1


def test_readers_in_parallel_over_http(okapi_server, transactional_db, campaign, token_for):
    """Six readers with bearer tokens against the live server: next-case (200/204) → submit (201)."""
    c = campaign(readers=6, cases=8, k=3, prefix="http_")
    pid = c.project.pk
    tokens = {r.pk: token_for(r) for r in c.readers}
    tally = Tally()
    statuses: Counter = Counter()

    def http_reader(reader):
        rng = random.Random(reader.pk)
        deadline = time.monotonic() + THREAD_TIMEOUT / 2
        with requests.Session() as sess:
            sess.headers["Authorization"] = f"Bearer {tokens[reader.pk]}"
            while True:
                resp = sess.post(f"{okapi_server}/api/v1/projects/{pid}/next-case", timeout=30)
                with tally.lock:
                    statuses[("next", resp.status_code)] += 1
                if resp.status_code == 204:
                    left = open_slots(c.project, reader)
                    if not left:
                        return
                    tally.add("premature", (reader.pk, left))  # reported as a failure at the end
                    assert time.monotonic() < deadline, f"204 while {left} were free, again and again"
                    time.sleep(0.01)
                    continue
                assert resp.status_code == 200, resp.text
                case_id = resp.json()["case"]["id"]
                assert resp.json()["reader"] == reader.username and resp.json()["state"] == "claimed"
                tally.add("claims", (reader.pk, case_id))
                resp = sess.post(
                    f"{okapi_server}/api/v1/cases/{case_id}/read",
                    json={
                        "answers": answers_for(rng),
                        "confidence": rng.randint(1, 5),
                        "submit": True,
                        "base_version": 0,
                    },
                    timeout=30,
                )
                with tally.lock:
                    statuses[("read", resp.status_code)] += 1
                assert resp.status_code == 201, resp.text
                body = resp.json()
                assert body["state"] == "submitted" and body["version"] == 1
                tally.add("saves", (reader.pk, case_id, body["version"], True))

    with SlotMonitor(c.project) as monitor:
        run_together(http_reader, [(r,) for r in c.readers])
    assert not monitor.errors and monitor.max_seen <= 3
    assert statuses[("read", 201)] == 8 * 3 == statuses[("next", 200)], statuses
    assert set(statuses) <= {("next", 200), ("next", 204), ("read", 201)}, statuses
    report_premature(tally)
    check_campaign_complete(c, tally)
    assert len(tally.claims) == len(set(tally.claims)) == 8 * 3


# ------------------------------------------------------------------- "next case" says none too early
# case_claim_next() locks its candidate rows with SELECT ... FOR UPDATE SKIP LOCKED and returns None as soon as
# that finds nothing, so a row locked by someone else counts as "no case left". Two ways that happens:


def _holding(fn, held: threading.Event, release: threading.Event, errors: list):
    """Thread body: run ``fn`` inside a transaction and keep it (and its row locks) open until ``release``."""
    from django.db import transaction

    def body():
        try:
            with transaction.atomic():
                fn()
                held.set()
                # Released by the test, or after 3 s: were "next case" made to wait for the lock instead of
                # skipping the row, the other reader would get its case once this commits.
                release.wait(3)
        except BaseException:  # noqa: BLE001
            errors.append(traceback.format_exc())
            held.set()
        finally:
            connection.close()

    return threading.Thread(target=body, daemon=True)


def test_next_case_is_not_empty_while_another_reader_holds_the_top_few(campaign, settings, monkeypatch):
    """A reader who pulls while another one is between its claim's SELECT and its COMMIT still gets a case
    (the claim locks only the row it takes, and locked rows are waited for, not counted as none left)."""
    from annotation.services import claims
    from annotation.services.claims import case_claim_next

    settings.OKAPI_CLAIM_TOP_FEW = 3
    monkeypatch.setattr(claims, "BUSY_WINDOW", timedelta(minutes=10))  # "busy" however slow the machine is
    c = campaign(readers=3, cases=3, k=3)
    first, holder, asker = c.readers
    assert case_claim_next(project=c.project, reader=first) is not None  # "busy": someone else claimed
    held, release, errors = threading.Event(), threading.Event(), []
    thread = _holding(lambda: case_claim_next(project=c.project, reader=holder), held, release, errors)
    thread.start()
    try:
        assert held.wait(10) and not errors, errors
        assert len(open_slots(c.project, asker)) == 3  # every case still has a free slot for the asker
        assignment = case_claim_next(project=c.project, reader=asker)
    finally:
        release.set()
        thread.join(10)
    assert not errors, errors
    assert assignment is not None, "told 'no case left' with 3 cases and 7 free slots"


def test_next_case_is_not_empty_while_another_reader_saves_on_the_last_open_case(campaign):
    """Saving a read locks its case row for the whole save: a reader who pulls meanwhile waits for it when it is
    the only case left with a free slot, instead of being told there is nothing left."""
    from annotation.services.claims import case_claim_next
    from annotation.services.reads import read_save

    c = campaign(readers=2, cases=1, k=3)
    saver, asker = c.readers
    assignment = case_claim_next(project=c.project, reader=saver)
    held, release, errors = threading.Event(), threading.Event(), []
    thread = _holding(
        lambda: read_save(
            case=assignment.case, reader=saver, answers={"finding": "A"}, submit=False, base_version=0
        ),
        held,
        release,
        errors,
    )
    thread.start()
    try:
        assert held.wait(10) and not errors, errors
        assert open_slots(c.project, asker) == [assignment.case_id]  # two of its three slots are free
        got = case_claim_next(project=c.project, reader=asker)
    finally:
        release.set()
        thread.join(10)
    assert not errors, errors
    assert got is not None, "told 'no case left' while the only case had two free slots"
