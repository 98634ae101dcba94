from vtp.cli import main

raise SystemExit(main())
