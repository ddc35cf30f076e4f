"""Logging in to the agent console (web/console.py) as an agent does: by its form, over HTTP or in a browser."""
import requests


def agent_session(base_url: str, name: str, password: str) -> requests.Session:
    """A requests session holding the agent's login cookie."""
    session = requests.Session()
    response = session.post(f"{base_url}/console/login", data={"name": name, "password": password},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return session


def log_in_page(page, base_url: str, name: str, password: str) -> None:
    """Fill the login form in a Playwright page; returns on the console, logged in."""
    page.goto(f"{base_url}/console/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/console")
