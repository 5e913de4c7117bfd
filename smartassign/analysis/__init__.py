"""Knowledge-assignment analysis (paper Fig. 3): which knowledge atoms rain and snow share
and which each keeps apart, as data, figures and numbers for any trained model.

- :mod:`.collect`: per image, the GKFM gates, DRM rows and pooled raw atoms;
- :mod:`.assignment`: gate statistics per atom, kind and task, and each atom's class;
- :mod:`.separation`: how separable the three kinds are (silhouette), and the t-SNE;
- :mod:`.figures`: the gate heat map and the t-SNE figure;
- :mod:`.report`: the numbers of one model (``Analysis``) and the files they go to;
- :mod:`.tracking`: the same in MLflow, on the model's training run;
- :mod:`.analyze`: ``smartassign analyze`` (DVC stage ``analyze``).
"""
