"""The files conr reads and writes: images and frames (`io`), UDP frames (`udp`), videos (`video`)
and the web UI's uploads (`uploads`); every output written atomically, every input bounded."""
