"""``python -m bot.delivery``: one delivery worker (what ``belofte run`` starts with Redis)."""

from bot.delivery.worker import run_worker
from bot.settings import get_settings

if __name__ == "__main__":
    run_worker(get_settings())
