"""The live feed page in Debian's headless Chromium (driven by selenium and Debian's chromedriver): it shows
the reader's feed with a push/pull badge per item, and a post published afterwards appears without a reload.
Opened from a signed-in link (`fanout up`, `fanout token USER_ID --url`), it posts, follows and unfollows
through the ingest API, another origin, while the token stays out of the address, the history and every
server's log. `FANOUT_SCREENSHOT=docs/feed-page.png pytest tests/e2e/test_page.py` refreshes the README's
screenshot."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live import Deployment, deploy
from ports import free_ports
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from fanout.core.events import Followed, Liked, PostCreated
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.read.page import page_url
from fanout.settings import Settings

pytestmark = pytest.mark.e2e
_ids = PostIdGenerator(node=1017)
READER, NORMAL, CELEB = 3_100_001, 3_100_002, 3_100_003


def post(author: int, body: str) -> PostCreated:
    pid = _ids.next_id()
    return PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body=body)


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # Ports of its own: the page's origin (the read API's port) is what the ingest API's CORS lets in, and
    # another deployment on the default ports may be running beside this one.
    ports = dict(zip(("read_api_port", "ingest_api_port", "worker_metrics_port", "notifier_metrics_port"),
                     free_ports(4), strict=True))
    with deploy(stack, tmp_path_factory.mktemp("logs"), "page", celebrity_threshold=3, **ports) as d:
        yield d


def chromium(profile: Path) -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    # Headless, and none of Chromium's own network traffic: this machine reaches only its registries.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,760", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[Callable[[], webdriver.Chrome]]:
    """Opens another browser (a profile of its own: one person each) on each call."""
    opened: list[webdriver.Chrome] = []

    def open_one() -> webdriver.Chrome:
        opened.append(chromium(tmp_path / f"profile-{len(opened)}"))
        return opened[-1]

    try:
        yield open_one
    finally:
        for driver in opened:
            driver.quit()


def test_the_page_shows_the_feed_and_a_new_post_appears_live(live: Deployment, browser: webdriver.Chrome) -> None:
    t = time.time_ns() // 1_000_000 - 10_000
    live.publish([Followed(event_time=t, follower_id=f, followee_id=a)
                  for a, fans in ((NORMAL, [READER]), (CELEB, [READER, READER + 10, READER + 11])) for f in fans])
    live.drain()
    earlier = [post(NORMAL, "pushed into the reader's inbox"), post(CELEB, "pulled from a celebrity's timeline")]
    live.publish(earlier)
    live.drain()

    browser.get(live.processes.url("read-api") + "/")
    token = live.tokens.headers(READER)["Authorization"].split()[1]  # what `fanout token` prints
    browser.find_element(By.ID, "reader").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#who button").click()
    wait = WebDriverWait(browser, 30)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#feed li")) == 2)  # two posts of one millisecond
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Live"))
    badges = {li.get_attribute("id"): li.find_element(By.CLASS_NAME, "badge").text.lower()
              for li in browser.find_elements(By.CSS_SELECTOR, "#feed li")}
    assert badges == {f"post-{earlier[0].post_id}": "push", f"post-{earlier[1].post_id}": "pull"}

    fresh = post(NORMAL, "published after the page loaded")
    live.publish([fresh])
    wait.until(expected_conditions.presence_of_element_located((By.ID, f"post-{fresh.post_id}")))
    first = browser.find_element(By.CSS_SELECTOR, "#feed li")
    assert first.get_attribute("id") == f"post-{fresh.post_id}"  # newest first, without a reload
    assert "published after the page loaded" in first.text
    shot = os.environ.get("FANOUT_SCREENSHOT")
    if shot:
        time.sleep(0.3)
        browser.save_screenshot(shot)


def test_the_bell_counts_unread_notifications_and_the_list_groups_them_live(live: Deployment,
                                                                            browser: webdriver.Chrome) -> None:
    owner, fans = READER + 100, [READER + 101, READER + 102, READER + 103]
    mine = post(owner, "a post to like")
    live.publish([mine])
    live.drain()
    browser.get(live.processes.url("read-api") + "/")
    browser.find_element(By.ID, "reader").send_keys(live.tokens.headers(owner)["Authorization"].split()[1])
    browser.find_element(By.CSS_SELECTOR, "#who button").click()
    wait = WebDriverWait(browser, 30)
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Live"))
    bell = browser.find_element(By.ID, "bell")
    assert bell.is_displayed() and browser.find_element(By.ID, "unread").text == "0"

    live.publish([Liked(event_time=time.time_ns() // 1_000_000, user_id=f, post_id=mine.post_id, author_id=owner)
                  for f in fans])
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "unread"), "1"))
    bell.click()
    item = "#notification-list li"
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, item).text ==
               f"user {fans[2]}, user {fans[1]} and user {fans[0]} liked your post {mine.post_id}")
    assert len(browser.find_elements(By.CSS_SELECTOR, item)) == 1  # one group, updated in place
    assert "unread" in browser.find_element(By.CSS_SELECTOR, item).get_attribute("class")

    bell.click()  # closing the list marks what it showed read, through the ingest API
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "unread"), "0"))
    assert "unread" not in browser.find_element(By.CSS_SELECTOR, item).get_attribute("class")
    with live.http("read-api", user=owner) as reads:
        assert reads.get("/v1/notifications/unread").json() == {"unread": 0}


def token_of(live: Deployment, user: int) -> str:
    return live.tokens.headers(user)["Authorization"].split()[1]


def follows(live: Deployment, follower: int, followee: int) -> bool:
    rows = live.cql("SELECT following FROM following_by_user WHERE user_id = %s AND followee_id = %s",
                    follower, followee)
    return [r.following for r in rows] == [True]


def open_signed_in(live: Deployment, driver: webdriver.Chrome, user: int) -> None:
    """Open the user's signed-in link, as `fanout up` prints it; the token leaves the address and the history
    at once, and the page says whom it is signed in as."""
    url = page_url(live.settings, token_of(live, user))
    before = driver.execute_script("return history.length")
    driver.get(url)
    wait = WebDriverWait(driver, 30)
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "me"), f"Signed in as user {user}."))
    assert token_of(live, user) not in driver.current_url and "#" not in driver.current_url
    # Replaced, not pushed: no entry of this tab's history holds the fragment.
    assert driver.execute_script("return [location.hash, history.length]") == ["", before + 1]
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "Live"))


def test_two_signed_in_pages_follow_post_and_unfollow_and_the_post_arrives_live(
        live: Deployment, browsers: Callable[[], webdriver.Chrome]) -> None:
    follower, author = READER + 200, READER + 201
    a, b = browsers(), browsers()
    open_signed_in(live, a, follower)
    open_signed_in(live, b, author)
    wait_a, wait_b = WebDriverWait(a, 30), WebDriverWait(b, 30)

    a.find_element(By.ID, "followee").send_keys(str(author))
    a.find_element(By.ID, "follow-button").click()
    wait_a.until(expected_conditions.text_to_be_present_in_element((By.ID, "follow-result"),
                                                                  f"Following user {author}"))
    live.drain()  # the follow is in the graph before the post, as a person would wait for it
    assert follows(live, follower, author)

    b.find_element(By.ID, "post-body").send_keys("written in user B's page, read live in user A's")
    b.find_element(By.ID, "post-button").click()
    wait_b.until(expected_conditions.text_to_be_present_in_element((By.ID, "post-result"), "Posted"))
    post_id = b.find_element(By.ID, "post-result").get_attribute("data-post-id")
    assert post_id and post_id.isdigit()
    arrived = wait_a.until(expected_conditions.presence_of_element_located((By.ID, f"post-{post_id}")))
    assert "written in user B's page" in arrived.text and f"user {author}" in arrived.text
    assert a.find_element(By.CSS_SELECTOR, "#feed li").get_attribute("id") == f"post-{post_id}"  # no reload

    a.refresh()  # the tab's sessionStorage keeps it signed in, with no token in the address
    wait_a.until(expected_conditions.text_to_be_present_in_element((By.ID, "me"), f"Signed in as user {follower}."))
    wait_a.until(expected_conditions.presence_of_element_located((By.ID, f"post-{post_id}")))
    assert "#" not in a.current_url

    live.drain()
    assert live.feed(follower) == [int(post_id)]
    a.find_element(By.ID, "followee").clear()
    a.find_element(By.ID, "followee").send_keys(str(author))
    a.find_element(By.ID, "unfollow-button").click()
    wait_a.until(expected_conditions.text_to_be_present_in_element((By.ID, "follow-result"),
                                                                  f"Unfollowed user {author}"))
    live.drain()
    assert live.feed(follower) == []  # the unfollow purged the author's post from the inbox
    assert not follows(live, follower, author)

    # A write the API refuses is shown as such: nobody follows themselves.
    a.find_element(By.ID, "followee").clear()
    a.find_element(By.ID, "followee").send_keys(str(follower))
    a.find_element(By.ID, "follow-button").click()
    wait_a.until(expected_conditions.text_to_be_present_in_element((By.ID, "follow-result"), "422"))
    assert "cannot follow themselves" in a.find_element(By.ID, "follow-result").text

    # The fragment never reached a server: no process logged either token.
    logs = {name: live.processes.log(name) for name in ("worker", "notifier", "read-api", "ingest-api")}
    assert all(logs.values()), "every process wrote its log"
    for user in (follower, author):
        assert [name for name, text in logs.items() if token_of(live, user) in text] == []
