"""The worker's plans (fanout/core/plans.py), compared whole: every event type's phases, their order and
what is in them, with the hard cases (tier switches both ways, a returning reader, a follow's backfill, a
delete by someone who is not the author, a follow racing a UserSeen). The executor's own rules (phases in
order, steps of a phase together, bulk and limits) are at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fanout.core import plans
from fanout.core.events import (
    CelebrityChunk,
    CelebritySetChanged,
    ChunkTask,
    DemotionChunk,
    FeedUpdate,
    FollowChanged,
    InboxChunk,
    InboxPurge,
    InvalidEvent,
    PostCreated,
    PostDeleted,
    PostDelivered,
    PostRemoved,
    PostStored,
    SeenChunk,
)
from fanout.core.model import Activity, AuthorStats, Edge, EdgeChange, Post, StoredPost, Tier
from fanout.core.plans import (
    AddCelebrity,
    Backfill,
    CommitEdges,
    Count,
    MarkDeleted,
    MarkFollowees,
    Phase,
    Push,
    RebuildFrom,
    RecheckSeen,
    RemoveCelebrity,
    SavePost,
    SendPurges,
    SendTasks,
    SendUpdates,
    SetActivity,
    SetCelebrities,
    SetEdgesSeen,
    SetFollowings,
    SetHidden,
    SwitchTier,
    Warn,
)
from fanout.core.ports import is_bulk_work
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.executor import Executor

DAY = 86_400_000
T = 100 * DAY  # event times of the tests
S = Settings.load(env={}, celebrity_threshold=3, celebrity_demote_ratio=0.5, chunk_size=2, rebuild_chunk_authors=2,
                  active_days=7)


def names(plan: plans.Plan) -> list[str]:
    return [phase.name for phase in plan]


# --- posts -----------------------------------------------------------------------------------------------

POST = PostCreated(event_time=T, post_id=50, author_id=7, body="hi")
STORED = PostStored(event_time=T, post_id=50, author_id=7, tier="push", body="hi")


def test_a_celebritys_post_is_stored_then_announced_and_never_pushed() -> None:
    facts = plans.PostFacts(AuthorStats(10, True, 3), None, None)
    assert plans.post_created(POST, facts, S) == (
        Phase("store", (SavePost(50, 7, "hi", Tier.PULL), Count("posts_by_tier", "pull"))),
        Phase("updates", (SendUpdates((PostStored(event_time=T, post_id=50, author_id=7, tier="pull", body="hi"),)),)),
    )


def test_a_small_fan_out_stores_and_pushes_together_then_sends_stored_before_delivered() -> None:
    facts = plans.PostFacts(AuthorStats(2, False, 3), None, (11, 12))
    assert plans.post_created(POST, facts, S) == (
        Phase("store and push", (SavePost(50, 7, "hi", Tier.PUSH), Push(50, 7, (11, 12), T, 2),
                                 Count("posts_by_tier", "push"))),
        Phase("updates", (SendUpdates((STORED, PostDelivered(event_time=T, post_id=50, author_id=7,
                                                              user_ids=(11, 12)))),)),
    )


def test_a_pushed_post_with_no_active_follower_is_stored_and_announced_only() -> None:
    facts = plans.PostFacts(AuthorStats(2, False, 3), None, ())
    assert plans.post_created(POST, facts, S) == (
        Phase("store and push", (SavePost(50, 7, "hi", Tier.PUSH), Count("posts_by_tier", "push"))),
        Phase("updates", (SendUpdates((STORED,)),)),
    )


def test_a_big_fan_out_sends_its_chunk_tasks_after_the_post_and_its_stored_update() -> None:
    facts = plans.PostFacts(AuthorStats(2, False, 3), None, (11, 12, 13, 14, 15))
    chunks = [(11, 12), (13, 14), (15,)]
    assert plans.post_created(POST, facts, S) == (
        Phase("store", (SavePost(50, 7, "hi", Tier.PUSH), Count("posts_by_tier", "push"))),
        Phase("updates", (SendUpdates((STORED,)),)),
        Phase("chunk tasks", (SendTasks(tuple(InboxChunk(event_time=T, post_id=50, author_id=7, follower_ids=c,
                                                         chunk=n, chunks=3, followers=2)
                                              for n, c in enumerate(chunks))),)),
    )


def test_a_replay_keeps_the_stored_tier_though_the_author_switched_since() -> None:
    facts = plans.PostFacts(AuthorStats(10, True, 3), StoredPost(7, Tier.PUSH), (11,))
    assert names(plans.post_created(POST, facts, S)) == ["store and push", "updates"]
    assert plans.needs_audience(AuthorStats(10, True, 3), None, S) is False  # so it was listed afterwards
    assert plans.needs_audience(AuthorStats(10, True, 3), StoredPost(7, Tier.PUSH), S) is True


def test_a_post_id_of_another_author_is_refused_with_nothing_written() -> None:
    facts = plans.PostFacts(AuthorStats(2, False, 3), StoredPost(8, Tier.PUSH), (11,))
    with pytest.raises(InvalidEvent) as info:
        plans.post_created(POST, facts, S)
    assert info.value.reason == "post_id_taken"


def test_a_fan_out_chunk_pushes_as_bulk_work_then_tells_the_read_services() -> None:
    task = InboxChunk(event_time=T, post_id=50, author_id=7, follower_ids=(11, 12), chunk=0, chunks=3, followers=5)
    assert plans.inbox_chunk(task) == (
        Phase("push", (Push(50, 7, (11, 12), T, 5),), bulk=True),
        Phase("updates", (SendUpdates((PostDelivered(event_time=T, post_id=50, author_id=7, user_ids=(11, 12)),)),)),
        Phase("done", (Count("fanout_chunks"),)),
    )


@pytest.mark.parametrize("stored", [Post(50, 8, "hi", False), None], ids=["another's post", "no post"])
def test_a_delete_by_someone_who_is_not_the_author_writes_nothing(stored: Post | None) -> None:
    plan = plans.post_deleted(PostDeleted(event_time=T, post_id=50, author_id=7), stored)
    assert names(plan) == ["refuse"]
    assert [type(s) for s in plan[0].steps] == [Warn, Count]


def test_a_delete_by_the_author_marks_the_post_then_tells_the_read_services() -> None:
    plan = plans.post_deleted(PostDeleted(event_time=T, post_id=50, author_id=7), Post(50, 7, "hi", False))
    assert plan == (
        Phase("delete", (MarkDeleted(50, 7, T),)),
        Phase("updates", (Count("deletes_applied"),
                          SendUpdates((PostRemoved(event_time=T, post_id=50, author_id=7),)))),
    )


# --- follows ---------------------------------------------------------------------------------------------

SEEN_TODAY = Activity(T - 1000, False)


def follow_facts(stats: AuthorStats, edges: dict[int, Edge] | None = None,
                 activities: dict[int, Activity] | None = None) -> plans.FollowFacts:
    return plans.FollowFacts(stats, edges or {}, activities or {}, now_ms=T)


def test_a_follow_of_a_normal_author_writes_the_followers_side_backfills_then_commits() -> None:
    plan = plans.follows_changed(7, [(11, True, T)], follow_facts(AuthorStats(0, False, 0), {}, {11: SEEN_TODAY}), S)
    v = T * 1000
    assert plan == (
        Phase("followers' side", (SetFollowings(((11, 7, True, T),)),)),
        Phase("backfill", (Backfill((11,), 7),)),
        Phase("commit", (CommitEdges(7, (EdgeChange(11, Edge(True, T), SEEN_TODAY.last_seen),),
                                     AuthorStats(1, False, v)),)),
        Phase("updates", (SendUpdates((FollowChanged(event_time=T, follower_id=11, followee_id=7, following=True),)),)),
    )


def test_an_unfollow_hides_the_author_at_once_and_purges_in_the_background() -> None:
    facts = follow_facts(AuthorStats(1, False, 5), {11: Edge(True, T - 9)})
    plan = plans.follows_changed(7, [(11, False, T)], facts, S)
    assert names(plan) == ["followers' side", "purges", "commit", "updates"]
    assert plan[0].steps == (SetFollowings(((11, 7, False, T),)), SetHidden(((11, 7, True, T),)),
                             SetCelebrities(((11, 7, False, T * 1000),)))  # left the set, if it was in it
    assert plan[1].steps == (SendPurges(7, ((11, T),)),)


def test_a_stale_or_repeated_follow_writes_only_the_followers_side() -> None:
    plan = plans.follows_changed(7, [(11, True, T)], follow_facts(AuthorStats(1, False, 5), {11: Edge(True, T)}), S)
    assert plan == (Phase("followers' side", (SetFollowings(((11, 7, True, T),)),)),)


def test_a_follow_that_makes_a_celebrity_switches_the_tier_before_its_commit_in_a_segment_of_its_own() -> None:
    facts = follow_facts(AuthorStats(1, False, 5), {}, {11: SEEN_TODAY, 12: SEEN_TODAY})
    plan = plans.follows_changed(7, [(11, True, T), (12, True, T + 1)], facts, S)  # 3 followers: a celebrity
    assert names(plan) == ["followers' side", "backfill", "commit", "updates",  # follower 11, still pushed to
                           "followers' side", "tier switch", "commit", "updates"]  # follower 12: the switch
    assert plan[4].steps == (SetFollowings(((12, 7, True, T + 1),)),
                             SetCelebrities(((12, 7, True, (T + 1) * 1000),)))  # no backfill: pulled from now on
    assert plan[5].steps == (SwitchTier(7, True, T + 1, (T + 1) * 1000, leave_out=12),)
    assert plan[6].steps[0].stats == AuthorStats(3, True, (T + 1) * 1000)  # type: ignore[union-attr]


def test_an_unfollow_that_demotes_a_celebrity_switches_the_tier_back() -> None:
    facts = follow_facts(AuthorStats(3, True, 5), {11: Edge(True, T - 9), 12: Edge(True, T - 9)})
    plan = plans.follows_changed(7, [(11, False, T), (12, False, T + 1)], facts, S)  # 3 -> 2: kept (hysteresis)
    assert "tier switch" not in names(plan[:4])
    assert plan[-3].steps == (SwitchTier(7, False, T + 1, (T + 1) * 1000, leave_out=12),)  # 2 -> 1: below 1.5


def test_a_tier_switch_plans_chunk_tasks_for_every_active_follower_but_the_switching_one() -> None:
    to_pull = plans.tier_switch(SwitchTier(7, True, T, 99, leave_out=12), [11, 12, 13, 14], None, chunk_size=2)
    assert to_pull == (Phase("tier switch", (Count("tier_switches", "to_pull"), SendTasks((
        CelebrityChunk(event_time=T, author_id=7, follower_ids=(11, 13), author_version=99),
        CelebrityChunk(event_time=T, author_id=7, follower_ids=(14,), author_version=99))))),)
    to_push = plans.tier_switch(SwitchTier(7, False, T, 99, leave_out=12), [11, 12], 77, chunk_size=2)
    assert to_push[0].steps[1] == SendTasks((DemotionChunk(event_time=T, author_id=7, follower_ids=(11,),
                                                           author_version=99, until_post_id=77),))


def test_promotion_and_demotion_chunks_keep_the_posts_reachable_in_between() -> None:
    promote = CelebrityChunk(event_time=T, author_id=7, follower_ids=(11,), author_version=99)
    assert plans.promoted(promote) == (
        Phase("celebrity sets", (AddCelebrity((11,), 7, 99),)),
        Phase("updates", (SendUpdates((CelebritySetChanged(event_time=T, author_id=7, user_ids=(11,),
                                                           celebrity=True),)),)),
    )
    demote = DemotionChunk(event_time=T, author_id=7, follower_ids=(11,), author_version=99, until_post_id=77)
    assert names(plans.demoted(demote)) == ["backfill", "celebrity sets", "updates"]  # backfilled before it leaves
    assert plans.demoted(demote)[:2] == (Phase("backfill", (Backfill((11,), 7, until_post_id=77),)),
                                         Phase("celebrity sets", (RemoveCelebrity((11,), 7, 99),)))


def test_a_run_longer_than_a_segment_commits_each_segment_before_the_next_is_written() -> None:
    changes = [(1000 + n, True, T) for n in range(plans.MAX_SEGMENT + 1)]
    facts = follow_facts(AuthorStats(0, False, 0), {}, {f: SEEN_TODAY for f, _, _ in changes})
    plan = plans.follows_changed(7, changes, facts, Settings.load(env={}, celebrity_threshold=10**6))
    assert names(plan) == ["followers' side", "backfill", "commit", "updates"] * 2
    first, second = plan[2].steps[0], plan[6].steps[0]
    assert isinstance(first, CommitEdges) and isinstance(second, CommitEdges)
    assert (len(first.changes), len(second.changes)) == (plans.MAX_SEGMENT, 1)
    assert second.stats.follower_count == plans.MAX_SEGMENT + 1


def test_a_follow_racing_a_user_seen_is_rechecked_after_the_commit() -> None:
    never_seen, due = Activity(None, False), Activity(T - 2 * DAY, False)
    facts = follow_facts(AuthorStats(0, False, 0), {}, {11: never_seen, 12: due, 13: SEEN_TODAY})
    plan = plans.follows_changed(7, [(11, True, T), (12, True, T), (13, True, T)],
                                 facts, Settings.load(env={}, celebrity_threshold=100))
    assert names(plan)[-1] == "recheck"
    assert plan[-1].steps == (RecheckSeen(7, ((11, None), (12, T - 2 * DAY))),)  # 13 read today: cannot be racing
    quiet = plans.follows_changed(7, [(11, True, T)], facts, S, seen_concurrently=False, announce=False)
    assert names(quiet) == ["followers' side", "backfill", "commit"]  # the bulk import: no recheck, no updates


def test_the_recheck_marks_only_edges_whose_reader_was_seen_meanwhile() -> None:
    as_read = {11: None, 12: T - 2 * DAY, 13: T - 2 * DAY}
    latest = {11: Activity(T + 5, False), 12: Activity(T - 2 * DAY, False), 13: Activity(T + 6, True)}
    assert plans.reseen(7, as_read, latest) == (
        Phase("edges seen", (SetEdgesSeen(11, (7,), T + 5), SetEdgesSeen(13, (7,), T + 6))),)
    assert plans.reseen(7, {11: None}, {11: Activity(None, False)}) == ()


def test_a_purge_task_purges_only_an_author_still_hidden() -> None:
    assert plans.purge(11, 7, 123, {7, 8}) == (Phase("purge", (plans.PurgeInbox(11, 7, 123),)),)
    assert plans.purge(11, 7, 123, {8}) == ()  # followed again meanwhile: its backfilled rows stay


# --- readers ---------------------------------------------------------------------------------------------

def test_a_reader_seen_within_the_day_changes_nothing() -> None:
    assert plans.user_seen(11, Activity(T - 1000, False), T, S) == ()


def test_a_feed_read_records_the_activity_before_listing_the_followees() -> None:
    assert plans.user_seen(11, Activity(T - 2 * DAY, False), T, S) == (
        Phase("activity", (SetActivity(11, Activity(T, False)),)),
        Phase("followees", (MarkFollowees(11, T, False, T),)),
    )


def test_a_returning_reader_is_flagged_and_rebuilt() -> None:
    assert plans.user_seen(11, Activity(T - 30 * DAY, False), T, S) == (
        Phase("activity", (SetActivity(11, Activity(T, True)), Count("regenerations", "started"))),
        Phase("followees", (MarkFollowees(11, T, True, T),)),
    )


def test_most_readers_edges_are_marked_inline() -> None:
    assert plans.followees_seen(MarkFollowees(11, T, False, T), [7, 8], S) == (
        Phase("edges seen", (SetEdgesSeen(11, (7, 8), T, 2),)),)
    assert plans.followees_seen(MarkFollowees(11, T, False, T), [], S) == ()


def test_a_reader_following_more_than_a_chunk_gets_chunk_tasks_the_last_sent_after_the_others() -> None:
    plan = plans.followees_seen(MarkFollowees(11, T, False, T), [7, 8, 9, 10, 12], S)
    tasks = [SeenChunk(event_time=T, user_id=11, author_ids=c, seen=T, rebuild=False, chunk=n, chunks=3, follows=5)
             for n, c in enumerate([(7, 8), (9, 10), (12,)])]
    assert plan == (Phase("chunk tasks", (SendTasks(tuple(tasks[:2])),)),
                    Phase("last chunk task", (SendTasks((tasks[2],)),)))


def test_a_returning_reader_following_nobody_is_rebuilt_at_once() -> None:
    assert plans.followees_seen(MarkFollowees(11, T, True, T), [], S) == (
        Phase("rebuilt", (SetActivity(11, Activity(T, False)), Count("regenerations", "finished"))),)


def test_a_rebuild_chunk_marks_edges_then_backfills_and_its_last_chunk_ends_the_rebuild() -> None:
    middle = SeenChunk(event_time=T, user_id=11, author_ids=(7, 8), seen=T, rebuild=True, chunk=0, chunks=2, follows=3)
    last = SeenChunk(event_time=T, user_id=11, author_ids=(9,), seen=T, rebuild=True, chunk=1, chunks=2, follows=3)
    assert names(plans.seen_chunk(middle)) == ["edges seen", "rebuild"]
    assert plans.seen_chunk(last) == (
        Phase("edges seen", (SetEdgesSeen(11, (9,), T, 3),)),
        Phase("rebuild", (RebuildFrom(11, (9,)),)),
        Phase("rebuilt", (SetActivity(11, Activity(T, False)), Count("regenerations", "finished"))),
    )
    plain = SeenChunk(event_time=T, user_id=11, author_ids=(7,), seen=T, rebuild=False, chunk=1, chunks=2, follows=3)
    assert plans.seen_chunk(plain) == (Phase("edges seen", (SetEdgesSeen(11, (7,), T, 3),)),)


def test_a_rebuild_copies_every_followee_but_the_celebrities_as_bulk_work_a_few_at_once() -> None:
    assert plans.rebuild_backfills(RebuildFrom(11, (7, 8, 9)), celebrities=[8]) == (
        Phase("backfills", (Backfill((11,), 7), Backfill((11,), 9)), bulk=True, limit=plans.REBUILD_CONCURRENCY),)


# --- the executor ----------------------------------------------------------------------------------------

class Recorder:
    """Sends that record when they start and end, and whether they ran as bulk work."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.running = self.most_running = 0

    async def send_task(self, task: ChunkTask) -> None:
        assert isinstance(task, InboxPurge)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.events.append(f"start {task.user_id}{' bulk' if is_bulk_work() else ''}")
        await asyncio.sleep(0.01)
        self.events.append(f"end {task.user_id}")
        self.running -= 1

    async def send_updates(self, updates: Sequence[FeedUpdate]) -> None:
        self.events.append(f"updates {len(updates)}")


def purge_task(user: int) -> InboxPurge:
    return InboxPurge(event_time=T, user_id=user, author_id=7, as_of_us=1)


def executor(r: Recorder) -> Executor:
    return Executor(None, S, Metrics(), r.send_task, r.send_updates)  # type: ignore[arg-type]


async def test_the_executor_runs_phases_in_order_and_the_steps_of_a_phase_together() -> None:
    r = Recorder()
    await executor(r).run((Phase("a", (SendTasks((purge_task(1),)), SendTasks((purge_task(2),)))),
                           Phase("b", (SendUpdates((PostRemoved(event_time=T, post_id=1, author_id=7),)),))))
    assert r.events[:2] == ["start 1", "start 2"] and r.events[-1] == "updates 1"  # b only after both ended
    assert r.most_running == 2


async def test_the_executor_keeps_a_phase_to_its_limit_and_marks_bulk_phases() -> None:
    r = Recorder()
    steps = tuple(SendTasks((purge_task(u),)) for u in range(5))
    await executor(r).run((Phase("bulk", steps, bulk=True, limit=2),))
    assert r.most_running == 2
    assert all(e.endswith(" bulk") for e in r.events if e.startswith("start"))
    r2 = Recorder()
    await executor(r2).run((Phase("not bulk", steps[:1]),))
    assert r2.events[0] == "start 0"


async def test_the_executor_counts_and_stamps_purges_when_it_sends_them() -> None:
    r, metrics = Recorder(), Metrics()
    stamps = iter([111, 222])
    x = Executor(None, S, metrics, r.send_task, r.send_updates, clock_us=lambda: next(stamps))  # type: ignore[arg-type]
    sent: list[InboxPurge] = []

    async def keep(task: ChunkTask) -> None:
        assert isinstance(task, InboxPurge)
        sent.append(task)

    x.send_task = keep
    await x.run((Phase("count", (Count("deletes_refused"), Count("posts_by_tier", "push", 2))),
                 Phase("purges", (SendPurges(7, ((11, T), (12, T + 1))),))))
    assert metrics.registry.get_sample_value("fanout_deletes_refused_total") == 1
    assert [(t.user_id, t.event_time, t.as_of_us) for t in sent] == [(11, T, 111), (12, T + 1, 111)]
