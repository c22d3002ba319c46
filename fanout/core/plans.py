"""What each event does, as plain data: a plan of phases run in order, each a set of steps run together.

Every handler of the worker fetches its facts, calls one function here and hands the plan it returns to
the executor (fanout/write/executor.py), which applies it to the stores and topics. The decisions stay in
policy.py; this module orders their outcome. The ordering rules the worker's correctness rests on are the
order of the phases, so they are asserted by comparing plans (tests/unit/test_plans.py):

- a post is stored before its PostStored update, and PostStored goes before any PostDelivered of it;
- a big fan-out's chunk tasks are sent only after the post and its PostStored;
- per segment of follow changes: the followers' side first (followings, hidden and celebrity sets), then
  backfills, then purge tasks, then a tier switch, then the commit (edges, count, version together), then
  the FollowChanged updates; every segment after the one before it; the activity re-read after the last
  commit (a UserSeen racing the follow);
- a feed read records the reader's activity before its followees are listed; a rebuild's last chunk task
  is sent after every other, and a rebuilt inbox is marked done after its last chunk's backfills;
- a demotion backfills before it leaves the celebrity sets.

A step that must read before it knows its writes (a tier switch lists the author's followers, a feed read
lists the reader's followees) is a step too: the executor reads, then asks a function here for the plan of
what follows, so those decisions are as testable as the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fanout.core.events import (
    CelebrityChunk,
    CelebritySetChanged,
    ChunkTask,
    DemotionChunk,
    FeedUpdate,
    FollowChanged,
    InboxChunk,
    InvalidEvent,
    PostCreated,
    PostDeleted,
    PostDelivered,
    PostRemoved,
    PostStored,
    SeenChunk,
)
from fanout.core.model import Activity, AuthorStats, Edge, EdgeChange, Post, StoredPost, Strategy, Tier
from fanout.core.policy import (
    CelebritySet,
    FollowSegment,
    FollowStep,
    decide_follows,
    lossy_audience,
    may_delete,
    plan_fanout,
    plan_seen,
    seen_may_be_refreshing,
)
from fanout.settings import Settings

# Follow changes of one author decided and committed together at most (a commit is one single-partition
# batch of about two statements per edge: this keeps it far below Cassandra's batch size limits).
MAX_SEGMENT = 256
REBUILD_CONCURRENCY = 8  # followees' timelines copied at once while rebuilding a returning reader's inbox
Change = tuple[int, bool, int]  # (follower, following, event time)
Followings = tuple[tuple[int, int, bool, int], ...]  # (user, followee, following, event time)
SetChanges = tuple[tuple[int, int, bool, int], ...]  # (user, author, member, event time or version)


# --- steps: writes ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class SavePost:
    post_id: int
    author_id: int
    body: str
    tier: Tier


@dataclass(slots=True)
class MarkDeleted:
    post_id: int
    author_id: int
    event_time: int


@dataclass(slots=True)
class Push:
    """The post into each follower's inbox; `audience` (the author's follower count) labels the lag."""

    post_id: int
    author_id: int
    followers: tuple[int, ...]
    event_time: int
    audience: int


@dataclass(slots=True)
class Backfill:
    """The author's latest posts (FANOUT_FOLLOW_BACKFILL), up to `until_post_id`, into these inboxes."""

    user_ids: tuple[int, ...]
    author_id: int
    until_post_id: int | None = None


@dataclass(slots=True)
class PurgeInbox:
    user_id: int
    author_id: int
    as_of_us: int


@dataclass(slots=True)
class SetFollowings:
    changes: Followings


@dataclass(slots=True)
class SetHidden:
    changes: SetChanges


@dataclass(slots=True)
class SetCelebrities:
    changes: SetChanges


@dataclass(slots=True)
class CommitEdges:
    """The commit point of follow changes: the edges, the follower count and the version, in one batch."""

    author_id: int
    changes: tuple[EdgeChange, ...]
    stats: AuthorStats


@dataclass(slots=True)
class SetEdgesSeen:
    user_id: int
    followees: tuple[int, ...]
    seen: int
    follows: int = 0  # the user's follow count, copied with `seen` (0: not known, left as it is)


@dataclass(slots=True)
class SetActivity:
    user_id: int
    activity: Activity


@dataclass(slots=True)
class AddCelebrity:
    user_ids: tuple[int, ...]
    author_id: int
    version: int


@dataclass(slots=True)
class RemoveCelebrity:
    user_ids: tuple[int, ...]
    author_id: int
    version: int


# --- steps: Kafka ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class SendTasks:
    """Chunk tasks, each acknowledged by Kafka before the phase ends."""

    tasks: tuple[ChunkTask, ...]


@dataclass(slots=True)
class SendPurges:
    """An InboxPurge task per (follower, event time), stamped when sent: inbox rows are written at the
    writer's clock, so rows pushed before the stamp are purged and rows of a later follow (backfilled after
    it) survive. In microseconds: a run backfills and purges the same pair within a millisecond."""

    author_id: int
    purges: tuple[tuple[int, int], ...]


@dataclass(slots=True)
class SendUpdates:
    """Feed updates for the read services, sent together and applied in this order."""

    updates: tuple[FeedUpdate, ...]


# --- steps that read, then plan what follows -------------------------------------------------------------

@dataclass(slots=True)
class SwitchTier:
    """The author crossed the threshold: list its active followers (and for a demotion its newest post),
    then `tier_switch` plans their celebrity-set changes as chunk tasks."""

    author_id: int
    to_celebrity: bool
    event_time: int
    version: int
    leave_out: int  # the switching event's own follower: its edge is not committed yet


@dataclass(slots=True)
class MarkFollowees:
    """A feed read: list the reader's followees, then `followees_seen` plans their edges' last_seen (and a
    rebuild)."""

    user_id: int
    seen: int
    rebuild: bool
    event_time: int


@dataclass(slots=True)
class RecheckSeen:
    """Re-read these new followers' activity after the commit: a UserSeen of a follower may have run
    meanwhile (keyed by the follower, so another batch group or worker) and listed its followees before
    this edge existed. It records the activity before listing; this reads it after the commit: one of the
    two sees the other. `reseen` plans the edges to mark."""

    author_id: int
    as_read: tuple[tuple[int, int | None], ...]  # (follower, last_seen as read before the run)


@dataclass(slots=True)
class RebuildFrom:
    """A returning reader's inbox from these followees' timelines: read the reader's celebrity set (pulled
    at read time, not copied), then `rebuild_backfills` plans one backfill per other followee."""

    user_id: int
    author_ids: tuple[int, ...]


# --- steps: bookkeeping ----------------------------------------------------------------------------------

@dataclass(slots=True)
class Count:
    """Add `amount` to the counter `metric` (a Metrics attribute), with `label` if it has one."""

    metric: str
    label: str | None = None
    amount: int = 1


@dataclass(slots=True)
class Warn:
    message: str


Step = (SavePost | MarkDeleted | Push | Backfill | PurgeInbox | SetFollowings | SetHidden | SetCelebrities
        | CommitEdges | SetEdgesSeen | SetActivity | AddCelebrity | RemoveCelebrity | SendTasks | SendPurges
        | SendUpdates | SwitchTier | MarkFollowees | RecheckSeen | RebuildFrom | Count | Warn)


@dataclass(slots=True)
class Phase:
    """Steps run together; the next phase starts when all of them are done.

    `bulk`: the phase is bulk work (a fan-out chunk, a rebuild), whose rows go after those of small posts
    handled meanwhile (fanout/core/ports.py bulk_work). `limit`: at most this many steps at once."""

    name: str
    steps: tuple[Step, ...]
    bulk: bool = False
    limit: int | None = None


Plan = tuple[Phase, ...]


def _plan(*phases: Phase | None) -> Plan:
    """The phases given, without the empty ones (a phase of nothing would still cost the executor a turn)."""
    return tuple(p for p in phases if p is not None and p.steps)


def _phase(name: str, *steps: Step | None, bulk: bool = False, limit: int | None = None) -> Phase:
    """A phase of the steps given, without the None ones."""
    return Phase(name, tuple(s for s in steps if s is not None), bulk, limit)


def slices(users: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """`users` in tuples of `size`."""
    return [tuple(users[i : i + size]) for i in range(0, len(users), size)]


# --- posts -----------------------------------------------------------------------------------------------

def audience_since(e: PostCreated, settings: Settings) -> int | None:
    """Whose inboxes a post reaches: followers seen since this (FANOUT_ACTIVE_DAYS before the post). Only the
    hybrid skips inactive followers; push-everything is the baseline it is measured against."""
    return e.event_time - settings.active_ms if settings.strategy is Strategy.HYBRID else None


def needs_audience(stats: AuthorStats, stored: StoredPost | None, settings: Settings) -> bool:
    """Whether the post is pushed, so that its author's active followers must be listed. Asked first with
    no stored post (the likely case, read at the same time as the stored one), then with it."""
    return plan_fanout(stats.is_celebrity, stats.follower_count, settings.chunk_size, stored.tier if stored else None,
                       settings.strategy).chunks > 0


@dataclass(frozen=True)
class PostFacts:
    stats: AuthorStats  # the author's, from the worker's cache
    stored: StoredPost | None  # the post as already stored: a replay
    audience: tuple[int, ...] | None  # the active followers, listed when the post is pushed
    over_followers: Mapping[int, int] = field(default_factory=dict)  # of those, follows above FANOUT_LOSSY_FOLLOWS


def post_created(e: PostCreated, facts: PostFacts, settings: Settings) -> Plan:
    """Store the post and deliver it: not at all (pulled), inline (a chunk of followers or fewer), or as
    chunk tasks. A stored tier wins (a replay is delivered as the first try was). Raises InvalidEvent for a
    post id that is another author's: anything holding the events topic's credentials could otherwise write
    over another's post (the same id, the same write timestamp)."""
    stats, stored = facts.stats, facts.stored
    if stored is not None and stored.author_id != e.author_id:
        raise InvalidEvent("post_id_taken", f"post {e.post_id} is user {stored.author_id}'s, not user {e.author_id}'s")
    fanout = plan_fanout(stats.is_celebrity, stats.follower_count, settings.chunk_size,
                         stored.tier if stored else None, settings.strategy)
    save = SavePost(e.post_id, e.author_id, e.body, fanout.tier)
    counted = Count("posts_by_tier", fanout.tier.value)
    # Read services learn of the post once it is stored (its body, and for a pulled post its place on the
    # author's cached head), and before any PostDelivered of it, which live streams serve from that body.
    stored_update = PostStored(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id,
                               tier=fanout.tier.value, body=e.body)
    if fanout.chunks == 0:
        return _plan(_phase("store", save, counted), _phase("updates", SendUpdates((stored_update,))))
    assert facts.audience is not None, "a pushed post needs its audience fetched"
    followers, skipped = lossy_audience(facts.audience, facts.over_followers, e.post_id, settings.chunk_size,
                                        settings.lossy_follows)
    lossy = Count("lossy_skipped", None, skipped) if skipped else None
    if len(followers) <= settings.chunk_size:
        # The post and its inbox rows in the same phase (often the same batches): a read that finds a pushed
        # id before its post skips it (fanout/read/feed.py), so nothing waits for the post first. Both
        # updates in one send (PostStored first): one wait for Kafka, not two.
        push = Push(e.post_id, e.author_id, followers, e.event_time, stats.follower_count) if followers else None
        return _plan(_phase("store and push", save, push, counted, lossy),
                     _phase("updates", SendUpdates(_delivered(e.post_id, e.author_id, followers, e.event_time,
                                                              after=(stored_update,)))))
    # A big fan-out becomes chunk tasks on their own topic: they spread over workers, and a crash replays
    # one chunk, not the whole fan-out. Sent (and acknowledged) before this event is done.
    chunks = slices(followers, settings.chunk_size)
    tasks = tuple(InboxChunk(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id, follower_ids=chunk,
                             chunk=n, chunks=len(chunks), followers=stats.follower_count)
                  for n, chunk in enumerate(chunks))
    return _plan(_phase("store", save, counted, lossy), _phase("updates", SendUpdates((stored_update,))),
                 _phase("chunk tasks", SendTasks(tasks)))


def inbox_chunk(task: InboxChunk) -> Plan:
    """One chunk of a big fan-out: bulk work, so the rows of small posts handled meanwhile go first."""
    return _plan(_phase("push", Push(task.post_id, task.author_id, task.follower_ids, task.event_time, task.followers),
                        bulk=True),
                 _phase("updates", SendUpdates(_delivered(task.post_id, task.author_id, task.follower_ids,
                                                          task.event_time))),
                 _phase("done", Count("fanout_chunks")))


def post_deleted(e: PostDeleted, stored: Post | None) -> Plan:
    """Mark the post deleted, if the claimed author is its author (`may_delete`); reads filter deleted
    posts, pushed or pulled, so no inbox is touched (no tombstones)."""
    if not may_delete(stored, e.author_id):
        return _plan(_phase("refuse", Warn(f"refused a delete of post {e.post_id} claimed by user {e.author_id}, "
                                           "not its author"), Count("deletes_refused")))
    return _plan(_phase("delete", MarkDeleted(e.post_id, e.author_id, e.event_time)),
                 _phase("updates", Count("deletes_applied"),
                        SendUpdates((PostRemoved(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id),))))


def _delivered(post_id: int, author_id: int, followers: tuple[int, ...], event_time: int,
               after: tuple[FeedUpdate, ...] = ()) -> tuple[FeedUpdate, ...]:
    """`after`, then the news that the post is in these followers' inboxes now (if any)."""
    if not followers:
        return after
    return (*after, PostDelivered(event_time=event_time, post_id=post_id, author_id=author_id, user_ids=followers))


# --- follows ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FollowFacts:
    stats: AuthorStats  # the author's, before the run
    edges: Mapping[int, Edge]  # the followers' edges to the author, before the run
    activities: Mapping[int, Activity]  # the activity of each follower who follows in the run
    now_ms: int  # the worker's clock, to judge which of them may be mid-UserSeen


def follows_changed(author_id: int, changes: Sequence[Change], facts: FollowFacts, settings: Settings,
                    seen_concurrently: bool = True, announce: bool = True) -> Plan:
    """The author's consecutive follows and unfollows of a batch of events, in order, as if one at a time:
    the decisions in order (`decide_follows`), then per segment the followers' side, backfills, purges, a
    tier switch, one commit and the updates. `seen_concurrently`: whether a follower's UserSeen may run
    meanwhile (False for the bulk import, which runs with the workers stopped): then the new followers'
    activity is re-read after the last commit. `announce`: whether read services are told (False for the bulk
    import, which has none to tell: its updates are not even built)."""
    seen = facts.activities
    phases: list[Phase] = []
    joined: set[int] = set()
    hid: set[int] = set()  # followers this run has hidden the author from
    for segment in decide_follows(facts.edges, facts.stats, changes, settings, MAX_SEGMENT):
        phases.extend(_segment(author_id, segment, seen, hid, announce))
        joined |= {f for f, edge in segment.edges.items() if edge.following}
    # Only a follower whose activity, as read, was never seen or due for a refresh can have a UserSeen in
    # flight (`seen_may_be_refreshing`): most followers read their feed within the day.
    recheck = sorted(f for f in joined if seen_may_be_refreshing(seen[f], facts.now_ms)) if seen_concurrently else []
    if recheck:
        phases.append(Phase("recheck", (RecheckSeen(author_id, tuple((f, seen[f].last_seen) for f in recheck)),)))
    return tuple(phases)


def _segment(author_id: int, segment: FollowSegment, seen: Mapping[int, Activity], hid: set[int],
             announce: bool) -> list[Phase]:
    """One segment's phases. Built directly, not filtered: most runs are one follow long, and this is most of
    what the worker does per follow."""
    steps = segment.steps
    # The followers' side first; these writes are last-writer-wins by event time (celebrity sets by the
    # author's version), so redoing them on a replay is harmless and a stale event cannot override a newer one.
    side: list[Step] = [SetFollowings(tuple((s.follower_id, author_id, s.decision.following, s.event_time)
                                            for s in steps))]
    if hidden := _hidden_changes(author_id, steps, seen, hid):
        side.append(SetHidden(hidden))
    if celebrities := tuple((s.follower_id, author_id, s.decision.celebrity_set is CelebritySet.ADD,
                             s.decision.stats.version) for s in steps
                            if s.decision.celebrity_set is not CelebritySet.KEEP):
        side.append(SetCelebrities(celebrities))
    phases = [Phase("followers' side", tuple(side))]
    if not segment.edges:
        return phases  # nothing fresh: stale or repeated events change nothing else
    fresh = [s for s in steps if s.decision.fresh]
    # One timeline read for every new follower of the segment. One that unfollows again within it is
    # backfilled too and purged by its unfollow's task, as one event at a time would.
    if backfill := tuple(sorted({s.follower_id for s in fresh if s.decision.backfill})):
        phases.append(Phase("backfill", (Backfill(backfill, author_id),)))
    if purges := tuple((s.follower_id, s.event_time) for s in fresh if s.decision.purge):
        phases.append(Phase("purges", (SendPurges(author_id, purges),)))
    if (switch := segment.tier_switch) is not None:
        # The switching event's own follower is handled above; its edge is not written yet, so it is left
        # out. Every edge decided before the switch was committed with the previous segment.
        phases.append(Phase("tier switch", (SwitchTier(author_id, switch.decision.stats.is_celebrity,
                                                       switch.event_time, switch.decision.stats.version,
                                                       leave_out=switch.follower_id),)))
    # The commit point: a crash before it replays these events as fresh, with the same versions.
    phases.append(Phase("commit", (CommitEdges(author_id, tuple(EdgeChange(f, edge, seen[f].last_seen if f in seen
                                                                           else None)
                                                                for f, edge in segment.edges.items()),
                                               segment.stats),)))
    if announce:  # live streams keep their connected readers' followees current
        phases.append(Phase("updates", (SendUpdates(tuple(
            FollowChanged(event_time=edge.changed_at, follower_id=f, followee_id=author_id, following=edge.following)
            for f, edge in segment.edges.items())),)))
    return phases


def _hidden_changes(author_id: int, steps: Sequence[FollowStep], seen: Mapping[int, Activity],
                    hid: set[int]) -> SetChanges:
    """The hidden-set changes of these steps. An unfollowed author is hidden at read at once (the purge
    task removes its rows in the background); a follow removes it from the set only if it is there, as
    read before the run (`seen`) or hidden by an earlier step of the run (`hid`, updated here): most
    follows are of authors never unfollowed, and the removal would cost a write and a new sets version
    (which makes the read service re-read the sets) for nothing. Only this author's handler adds this
    author to a set, and it runs one run at a time, so an absent element stays absent meanwhile.

    A step that is not fresh writes nothing: a replayed one had its rows written before its commit, and a
    stale unfollow must not hide an author that a newer follow left out of the set without a removal."""
    changes = []
    for s in steps:
        if not s.decision.fresh:
            continue
        if not s.decision.following:
            hid.add(s.follower_id)
            changes.append((s.follower_id, author_id, True, s.event_time))
        elif s.follower_id in hid or author_id in seen[s.follower_id].hidden:
            changes.append((s.follower_id, author_id, False, s.event_time))
    return tuple(changes)


def reseen(author_id: int, as_read: Mapping[int, int | None], latest: Mapping[int, Activity]) -> Plan:
    """After `RecheckSeen` re-read the activities: the edge of each follower whose last_seen moved since the
    run read it gets that last_seen (a UserSeen ran meanwhile and may have missed the edge)."""
    return _plan(_phase("edges seen", *(SetEdgesSeen(f, (author_id,), a.last_seen) for f, a in sorted(latest.items())
                                        if a.last_seen is not None and a.last_seen != as_read.get(f))))


def tier_switch(step: SwitchTier, followers: Sequence[int], newest_post: int | None, chunk_size: int) -> Plan:
    """After `SwitchTier` listed the author's active followers (and, for a demotion, its newest post): their
    celebrity sets change in the background, in chunk tasks. A demotion's posts up to the newest one now
    were pulled; later ones will be pushed."""
    audience = [f for f in followers if f != step.leave_out]
    tasks: tuple[ChunkTask, ...]
    if step.to_celebrity:
        tasks = tuple(CelebrityChunk(event_time=step.event_time, author_id=step.author_id, follower_ids=s,
                                     author_version=step.version) for s in slices(audience, chunk_size))
    else:
        tasks = tuple(DemotionChunk(event_time=step.event_time, author_id=step.author_id, follower_ids=s,
                                    author_version=step.version, until_post_id=newest_post or 0)
                      for s in slices(audience, chunk_size))
    return _plan(_phase("tier switch", Count("tier_switches", "to_pull" if step.to_celebrity else "to_push"),
                        SendTasks(tasks) if tasks else None))


def promoted(task: CelebrityChunk) -> Plan:
    changed = CelebritySetChanged(event_time=task.event_time, author_id=task.author_id, user_ids=task.follower_ids,
                                  celebrity=True)
    return _plan(_phase("celebrity sets", AddCelebrity(task.follower_ids, task.author_id, task.author_version)),
                 _phase("updates", SendUpdates((changed,))))


def demoted(task: DemotionChunk) -> Plan:
    """Backfill first, then leave the celebrity sets: at every moment the author's recent posts are
    reachable through the inbox or the celebrity timeline (reads dedupe)."""
    return _plan(_phase("backfill", Backfill(task.follower_ids, task.author_id, until_post_id=task.until_post_id)),
                 _phase("celebrity sets", RemoveCelebrity(task.follower_ids, task.author_id, task.author_version)),
                 _phase("updates", SendUpdates((CelebritySetChanged(event_time=task.event_time,
                                                                    author_id=task.author_id,
                                                                    user_ids=task.follower_ids, celebrity=False),))))


def purge(user_id: int, author_id: int, as_of_us: int, hidden: frozenset[int] | set[int]) -> Plan:
    """An unfollow's purge task: the author's rows leave the inbox, unless followed again meanwhile (no
    longer hidden: its backfilled rows must stay)."""
    return _plan(_phase("purge", PurgeInbox(user_id, author_id, as_of_us) if author_id in hidden else None))


# --- readers ---------------------------------------------------------------------------------------------

def user_seen(user_id: int, activity: Activity, event_time: int, settings: Settings) -> Plan:
    """A feed read. Every user's edges carry a recent last_seen so pushes reach them; a user back after
    FANOUT_ACTIVE_DAYS also gets their inbox rebuilt. The activity is recorded before the followees are
    listed (see `RecheckSeen`); a returning user is flagged so reads keep pulling until the rebuild is done."""
    seen = plan_seen(activity, event_time, settings)
    if seen is None:
        return ()  # recent enough: nothing to refresh
    return _plan(_phase("activity", SetActivity(user_id, Activity(seen.seen, seen.returning)),
                        Count("regenerations", "started") if seen.returning else None),
                 _phase("followees", MarkFollowees(user_id, seen.seen, seen.returning, event_time)))


def followees_seen(step: MarkFollowees, followees: Sequence[int], settings: Settings) -> Plan:
    """After `MarkFollowees` listed the reader's followees. Most readers: their edges, inline. A reader
    following more than a chunk, or returning: every followee, however many (a cap on a rebuild would leave
    the rest out of the inbox for good), in chunk tasks keyed by the reader, on one partition of the chunks
    topic, each between other tasks, so no feed read holds its partition for longer than a list of its
    followees. A rebuild's chunks are smaller (FANOUT_REBUILD_CHUNK_AUTHORS): each followee costs a
    timeline read. The last chunk ends a rebuild, so it is sent once Kafka holds every other: after them
    on the reader's partition."""
    if not step.rebuild and len(followees) <= settings.chunk_size:
        inline = SetEdgesSeen(step.user_id, tuple(followees), step.seen, len(followees)) if followees else None
        return _plan(_phase("edges seen", inline))
    if not followees:
        return _rebuilt(step.user_id, step.seen)
    size = settings.rebuild_chunk_authors if step.rebuild else settings.chunk_size
    chunks = slices(followees, size)
    tasks = [SeenChunk(event_time=step.event_time, user_id=step.user_id, author_ids=chunk, seen=step.seen,
                       rebuild=step.rebuild, chunk=n, chunks=len(chunks), follows=len(followees))
             for n, chunk in enumerate(chunks)]
    return _plan(_phase("chunk tasks", SendTasks(tuple(tasks[:-1])) if len(tasks) > 1 else None),
                 _phase("last chunk task", SendTasks((tasks[-1],))))


def seen_chunk(task: SeenChunk) -> Plan:
    """One chunk of a feed read's followees: the reader's edges to them first (pushes resume, so nothing
    posted meanwhile is missed), then, for a returning reader, their recent posts into the inbox."""
    edges = _phase("edges seen", SetEdgesSeen(task.user_id, task.author_ids, task.seen, task.follows))
    if not task.rebuild:
        return _plan(edges)
    last = _rebuilt(task.user_id, task.seen) if task.chunk == task.chunks - 1 else ()
    return _plan(edges, _phase("rebuild", RebuildFrom(task.user_id, task.author_ids)), *last)


def rebuild_backfills(step: RebuildFrom, celebrities: Sequence[int]) -> Plan:
    """After `RebuildFrom` read the reader's celebrity set: one backfill per other followee, a few at once,
    as bulk work (the rows of posts handled meanwhile go first, as for fan-out chunks)."""
    pulled = set(celebrities)
    return _plan(_phase("backfills", *(Backfill((step.user_id,), a) for a in step.author_ids if a not in pulled),
                        bulk=True, limit=REBUILD_CONCURRENCY))


def _rebuilt(user_id: int, seen: int) -> Plan:
    return _plan(_phase("rebuilt", SetActivity(user_id, Activity(seen, False)), Count("regenerations", "finished")))

