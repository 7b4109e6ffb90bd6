"""Model lifecycle: continuous learning (a challenger fine-tuned from the champion, promoted only
on out-of-sample evidence) and drift. Above evaluation (it trains and tests), below agents."""
