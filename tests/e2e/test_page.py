"""The live feed page in Debian's headless Chromium (driven by selenium and Debian's chromedriver): it shows
the reader's feed with a push/pull badge per item, and a post published afterwards appears without a reload.
`FANOUT_SCREENSHOT=docs/feed-page.png pytest tests/e2e/test_page.py` refreshes the README's screenshot."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Deployment, deploy
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from fanout.core.events import Followed, Liked, PostCreated
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.settings import Settings

pytestmark = pytest.mark.e2e
_ids = PostIdGenerator(node=1017)
READER, NORMAL, CELEB = 3_100_001, 3_100_002, 3_100_003


def post(author: int, body: str) -> PostCreated:
    pid = _ids.next_id()
    return PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body=body)


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "page", celebrity_threshold=3) as d:
        yield d


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    # Headless, and none of Chromium's own network traffic: this machine reaches only its registries.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,760", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
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
