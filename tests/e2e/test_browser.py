from playwright.sync_api import expect, sync_playwright

from tests.browser import launch_chromium
from tests.e2e.catalog_checks import assert_are_red_sneakers_under
from tests.e2e.conftest import SHOP_NAME

BOT_MESSAGES = "#shop-chat .rw-group-message.rw-from-response .rw-message-text"


def test_shopper_chats_in_the_widget_and_gets_product_cards(stack):
    page_errors = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(stack.web_url)

            launcher = page.locator("#shop-chat .rw-launcher")
            expect(launcher).to_be_visible(timeout=30_000)
            launcher.click()
            # The widget opens the conversation with /greet.
            expect(page.locator(BOT_MESSAGES).first).to_contain_text(f"welcome to {SHOP_NAME}", timeout=30_000)

            message_box = page.locator("#shop-chat .rw-new-message")
            message_box.fill("show me red sneakers under 80 dollars")
            message_box.press("Enter")

            expect(page.locator(BOT_MESSAGES).last).to_contain_text("red sneakers under $80", timeout=30_000)
            card_titles = page.locator("#shop-chat .rw-carousel-card .rw-carousel-card-title")
            expect(card_titles.first).to_be_visible(timeout=30_000)
            titles = [t.strip() for t in card_titles.all_inner_texts()]
            assert_are_red_sneakers_under(stack.engine(), titles, 8000)
            page.screenshot(path=str(stack.workdir / "chat.png"))
        finally:
            browser.close()
    assert page_errors == []
