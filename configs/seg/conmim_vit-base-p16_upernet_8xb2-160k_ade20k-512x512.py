# UperNet + ConMIM ViT-B/16 (BEiT-style encoder) on ADE20K: the MAE/BEiT recipe of
# docs/recipes.md with the ConMIM encoder. EXTRAPOLATED: no ConMIM segmentation
# numbers or settings were released. The pretraining's shared relative position table is
# copied into
# every block and resized from the 14x14 to the 32x32 window on loading (BEiT's
# documented fine-tuning initialisation); per-block index buffers are recomputed.
# Checkpoint argument: --cfg-options model.backbone.init_cfg.checkpoint=PATH;
# model.backbone.init_cfg.encoder defaults to 'target' (the momentum encoder, as the
# official ConMIM fine-tuning example), 'online' also works.
_base_ = ['./cmae_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py']

encoder = 'target'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TransferBEiTViT',
        arch=dict(
            embed_dims=768, num_layers=12, num_heads=12, feedforward_channels=3072),
        img_size=(512, 512),
        patch_size=16,
        drop_path_rate=0.1,
        out_indices=[3, 5, 7, 11],
        out_type='featmap',
        final_norm=False,
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,  # overwritten by the loaded gamma_1/gamma_2
        use_sdpa=True,  # attention through SDPA, the relative bias as additive mask
        init_cfg=dict(
            type='PretrainedEncoder',
            checkpoint=None,
            encoder=encoder,
            allowed_missing=[r'relative_position_index$'])))
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            'relative_position_bias_table': dict(decay_mult=0.0),
        }))
