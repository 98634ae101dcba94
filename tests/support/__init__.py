"""What the tests share, one copy each: waiting for an outcome (:mod:`.waiting`), media
sources and the readers that recognise them after decoding (:mod:`.media`), and the
headless Chromium harness (:mod:`.chromium`)."""
