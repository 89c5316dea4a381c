from pivh_live.cli import main

raise SystemExit(main())
