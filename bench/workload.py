"""Synthetic social graphs and event sequences, and the oracle that says what every feed must show.

Follower counts follow a power law (exponent ~2.28, Kwak et al. 2010); the top 10% of users write 80%
of the posts. Everything is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from fanout.core.events import Event, Followed, PostCreated, PostDeleted, Unfollowed
from fanout.core.ids import EPOCH_MS, TIME_SHIFT, millis_of


@dataclass
class Graph:
    users: list[int]
    followers: dict[int, set[int]]  # author -> followers

    def following(self) -> dict[int, set[int]]:
        out: dict[int, set[int]] = defaultdict(set)
        for author, fs in self.followers.items():
            for f in fs:
                out[f].add(author)
        return out

    def follower_count(self, author: int) -> int:
        return len(self.followers.get(author, ()))


def power_law_graph(n_users: int, seed: int, exponent: float = 2.28, min_followers: int = 1,
                    celebrities: int = 0, celebrity_followers: int = 0, first_id: int = 1) -> Graph:
    """`n_users` users; follower counts drawn from a discrete power law; `celebrities` users get at
    least `celebrity_followers` followers (capped at n_users - 1)."""
    rng = random.Random(seed)
    users = list(range(first_id, first_id + n_users))
    counts = {}
    for u in users:
        k = int(min_followers * (1 - rng.random()) ** (-1 / (exponent - 1)))
        counts[u] = min(k, n_users - 1)
    for u in rng.sample(users, celebrities):
        counts[u] = max(counts[u], min(celebrity_followers, n_users - 1))
    followers = {}
    for u in users:
        others = rng.sample(users, min(counts[u] + 1, n_users))
        followers[u] = {f for f in others if f != u}
        if len(followers[u]) > counts[u]:
            followers[u].pop()
    return Graph(users, followers)


@dataclass
class Workload:
    graph: Graph
    follows: list[Event] = field(default_factory=list)
    posts: list[PostCreated] = field(default_factory=list)
    deletes: list[PostDeleted] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return [*self.follows, *self.posts, *self.deletes]


def build_workload(graph: Graph, n_posts: int, seed: int, delete_share: float = 0.0, unfollow_share: float = 0.0,
                   start_ms: int = 1_790_000_000_000) -> Workload:
    """Follow events for the graph (with some follow-then-unfollow pairs), then posts (the top 10% of
    users write 80% of them) and deletes of a share of the posts. Event times increase along the list."""
    rng = random.Random(seed)
    clock = iter(range(start_ms, start_ms + 10**9))
    w = Workload(graph)
    for author, fs in graph.followers.items():
        for f in sorted(fs):
            w.follows.append(Followed(event_time=next(clock), follower_id=f, followee_id=author))
        # Extra pairs that follow and then unfollow: they must leave no trace in the feeds.
        non_followers = [u for u in graph.users[:50] if u != author and u not in fs]
        for f in rng.sample(non_followers, int(len(non_followers) * unfollow_share)):
            w.follows.append(Followed(event_time=next(clock), follower_id=f, followee_id=author))
            w.follows.append(Unfollowed(event_time=next(clock), follower_id=f, followee_id=author))
    # Heavy posters: the most-followed 1% (accounts people follow are the ones that post) plus a random
    # sample, 10% of users in all.
    top = sorted(graph.users, key=graph.follower_count, reverse=True)[: max(1, len(graph.users) // 100)]
    rest = [u for u in graph.users if u not in set(top)]
    heavy = top + rng.sample(rest, max(0, len(graph.users) // 10 - len(top)))
    sequence = 0
    for _ in range(n_posts):
        author = rng.choice(heavy) if rng.random() < 0.8 else rng.choice(graph.users)
        t = next(clock)
        sequence += 1
        post_id = ((t - EPOCH_MS) << TIME_SHIFT) | (sequence & 0xFFF)
        w.posts.append(PostCreated(event_time=millis_of(post_id), post_id=post_id, author_id=author,
                                   body=f"post {sequence} by {author}"))
    for post in rng.sample(w.posts, int(len(w.posts) * delete_share)):
        w.deletes.append(PostDeleted(event_time=next(clock), post_id=post.post_id, author_id=post.author_id))
    return w


def expected_feeds(workload: Workload) -> dict[int, list[int]]:
    """The oracle: for each user, every live post of every account they follow, newest first."""
    deleted = {d.post_id for d in workload.deletes}
    by_author: dict[int, list[int]] = defaultdict(list)
    for p in workload.posts:
        if p.post_id not in deleted:
            by_author[p.author_id].append(p.post_id)
    following = workload.graph.following()
    return {
        u: sorted((pid for a in following.get(u, ()) for pid in by_author.get(a, ())), reverse=True)
        for u in workload.graph.users
    }


def expected_celebrities(workload: Workload, threshold: int, demote_ratio: float) -> set[int]:
    """Authors that are celebrities after the follow events, replayed in order through the policy."""
    from fanout.core.policy import is_celebrity_after

    count: dict[int, int] = defaultdict(int)
    edges: set[tuple[int, int]] = set()
    celebrity: dict[int, bool] = defaultdict(bool)
    for e in workload.follows:
        assert isinstance(e, Followed | Unfollowed)
        pair = (e.followee_id, e.follower_id)
        if isinstance(e, Followed) and pair not in edges:
            edges.add(pair)
            count[e.followee_id] += 1
        elif isinstance(e, Unfollowed) and pair in edges:
            edges.remove(pair)
            count[e.followee_id] -= 1
        else:
            continue
        celebrity[e.followee_id] = is_celebrity_after(celebrity[e.followee_id], count[e.followee_id], threshold,
                                                      demote_ratio)
    return {a for a, c in celebrity.items() if c}
